"""The official Cityscapes instance-level metric (AP over IoU 0.5:0.95, AP50) via cityscapesscripts'
``evalInstanceLevelSemanticLabeling``, next to the COCO metrics for a Cityscapes dataset.

The script reads predictions as files (one PNG per instance mask plus a text file per image) and the ground truth
as ``*_gtFine_instanceIds.png``, whose folder ``prepare cityscapes`` records in the manifest (``gtFine`` per
split). Everything it writes (those files, its ground-truth cache) goes to a temporary folder that is removed
afterwards, which is also the working folder while it runs; its printing is silenced.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from edgercnn.core.errors import EdgeRCNNError
from edgercnn.evaluation.metrics import CITYSCAPES_METRICS  # the script's allAp and allAp50% on the 0–100 scale

_FIX = "re-run edgercnn prepare cityscapes (it records the gtFine folder) with the gtFine instanceIds PNGs in place"


def gt_folder(manifest: dict[str, Any], split: str) -> Path | None:
    """The gtFine folder of ``split`` recorded by ``prepare cityscapes``, or None (not a Cityscapes dataset, or
    one prepared before the folder was recorded)."""
    entry = manifest.get("splits", {}).get(split, {})
    if manifest.get("name") != "cityscapes" or "gtFine" not in entry:
        return None
    return Path(manifest["root"]) / entry["gtFine"]


@contextlib.contextmanager
def _numpy_in1d() -> Iterator[None]:
    """cityscapesscripts 2.3.0 calls ``np.in1d``, which numpy 2.4 removed (upstream fix pending:
    mcordts/cityscapesScripts pull request #196, ``np.isin``). Only while the script runs, and only on such a
    numpy, ``np.in1d`` is ``np.isin`` flattened (what in1d returned); removed again afterwards. Drop this once a
    fixed cityscapesscripts is released."""
    if hasattr(np, "in1d"):
        yield
        return
    np.in1d = lambda a, b, **kw: np.isin(a, b, **kw).ravel()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del np.in1d


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """contextlib.chdir (Python 3.11+) for 3.10: anything the script writes to the working folder (its
    evaluateImgLists writes matches.json there) lands in the temporary folder."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _options(tmp: Path) -> Any:
    """The script's default options (its module-level ``args``), quiet, with every file it writes in ``tmp``."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as ev

    opts = ev.CArgs()
    for key in ("overlaps", "minRegionSizes", "distanceThs", "distanceConfs"):
        setattr(opts, key, getattr(ev.args, key).copy())
    opts.gtInstancesFile = str(tmp / "gtInstances.json")
    opts.exportFile = str(tmp / "result.json")
    opts.predictionPath, opts.predictionWalk = str((tmp / "pred").resolve()), None
    opts.distanceAvailable, opts.JSONOutput, opts.quiet, opts.csv, opts.colorized = False, False, True, False, False
    opts.instLabels = []
    return opts


def cityscapes_metrics(gt_dataset: dict[str, Any], results: list[dict[str, Any]], image_ids: list[int],
                       gt_dir: Path) -> dict[str, float]:
    """``cityscapes_AP`` and ``cityscapes_AP50`` (0–100) of COCO-format ``results`` (RLE masks, category id =
    Cityscapes label id) over ``image_ids`` of ``gt_dataset``, against ``gt_dir/<city>/*_gtFine_instanceIds.png``."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as ev

    images = {img["id"]: img for img in gt_dataset["images"]}
    by_image: dict[int, list[dict[str, Any]]] = {i: [] for i in image_ids}
    for r in results:
        if r["image_id"] in by_image:
            by_image[r["image_id"]].append(r)
    with tempfile.TemporaryDirectory(prefix="edgercnn-cityscapes-") as name:
        tmp = Path(name).resolve()
        (tmp / "pred" / "masks").mkdir(parents=True)
        preds, gts = [], []
        for image_id in sorted(by_image):
            file_name = images[image_id]["file_name"]
            gt = gt_dir / file_name.replace("_leftImg8bit.png", "_gtFine_instanceIds.png")
            if not gt.is_file():
                raise EdgeRCNNError(f"{gt}: ground truth of image {file_name} not found for the Cityscapes metric; "
                                    f"{_FIX}")
            stem = Path(file_name).name.replace("_leftImg8bit.png", "")
            lines = []
            for k, r in enumerate(by_image[image_id]):
                mask = mask_util.decode(r["segmentation"]).astype(np.uint8) * 255
                rel = f"masks/{stem}_{k}.png"
                Image.fromarray(mask).save(tmp / "pred" / rel, compress_level=1)  # read once, right away
                lines.append(f"{rel} {int(r['category_id'])} {float(r['score']):.6f}\n")
            pred = tmp / "pred" / f"{stem}_pred.txt"
            pred.write_text("".join(lines))
            preds.append(str(pred))
            gts.append(str(gt.resolve()))
        if not gts:
            return {m: float("nan") for m in CITYSCAPES_METRICS}
        out, opts = io.StringIO(), _options(tmp)
        try:
            with _cwd(tmp), _numpy_in1d(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                # evaluateImgLists' steps, less its debugging dump of all matches to ./matches.json (which fails
                # on numpy 2.4's numpy.int64 counts and is not needed for the averages)
                ev.setInstanceLabels(opts)
                matches = ev.matchGtWithPreds(preds, gts, ev.getGtInstances(gts, opts), opts)
                avg = ev.computeAverages(ev.evaluateMatches(matches, opts), opts)
        except SystemExit:  # the script's printError exits
            raise EdgeRCNNError(f"cityscapesscripts could not evaluate: {out.getvalue().strip()[-200:]}; {_FIX}") \
                from None
    return {"cityscapes_AP": 100.0 * float(avg["allAp"]), "cityscapes_AP50": 100.0 * float(avg["allAp50%"])}
