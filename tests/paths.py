"""Where the tests find the repository and the files committed with them (one owner, whatever a test's depth)."""

from pathlib import Path

#: The repository root (README.md, scripts/, results/, the edgercnn package).
REPO = Path(__file__).resolve().parents[1]
#: One real Cityscapes val frame (downscaled), copied from ../shared/fixtures/cityscapes so a clean clone has it.
CITYSCAPES_FIXTURE = REPO / "tests" / "fixtures" / "cityscapes"
#: Datasets shared by the checkouts next to this one (../shared/datasets); tests that use them skip without them.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
