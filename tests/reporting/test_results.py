"""edgercnn.reporting.results.git_commit: the commit a result was trained from, dirty only for changes to the code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgercnn.reporting.results import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A committed checkout: package, pyproject.toml and a results/ CSV."""
    (tmp_path / "edgercnn").mkdir()
    (tmp_path / "edgercnn" / "loss.py").write_text("ALPHA = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "seed-0.csv").write_text("segm_AP\n40.0\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "c")
    return tmp_path


def test_clean_checkout_records_the_commit(checkout: Path) -> None:
    assert git_commit(checkout / "edgercnn") == _git(checkout, "rev-parse", "HEAD")


def test_re_made_results_leave_the_commit_clean(checkout: Path) -> None:
    (checkout / "results" / "seed-0.csv").unlink()
    (checkout / "results" / "seed-1.csv").write_text("segm_AP\n41.0\n")
    assert git_commit(checkout / "edgercnn") == _git(checkout, "rev-parse", "HEAD")


@pytest.mark.parametrize("change", ["edit module", "new module", "edit pyproject"])
def test_code_changes_make_it_dirty(checkout: Path, change: str) -> None:
    if change == "edit module":
        (checkout / "edgercnn" / "loss.py").write_text("ALPHA = 2\n")
    elif change == "new module":
        (checkout / "edgercnn" / "extra.py").write_text("X = 1\n")
    else:
        (checkout / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert git_commit(checkout / "edgercnn") == _git(checkout, "rev-parse", "HEAD") + "-dirty"


def test_outside_a_repository_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "edgercnn").mkdir()
    assert git_commit(tmp_path / "edgercnn") == "unknown"
