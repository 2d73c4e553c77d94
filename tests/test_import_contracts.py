"""The import-linter contracts of pyproject.toml bite: a copy of the package with one import cycle added inside a
package (the kind config/recipes <-> config/runconfig once had) fails ``lint-imports``, naming the contract, the
package and the import to remove, while the unchanged copy keeps every contract."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path):
    """The package's source and the contracts, copied (no caches)."""
    shutil.copytree(REPO / "edgercnn", tmp_path / "edgercnn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is in the 'test' extra: pip install -e '.[test]'")
def test_a_cycle_inside_a_package_fails_lint_imports(tree):
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 broken" in clean.stdout
    recipes = tree / "edgercnn" / "config" / "recipes" / "__init__.py"
    recipes.write_text(recipes.read_text() + "\n\ndef _defaults():\n    from edgercnn.config import runconfig\n"
                       "    return runconfig\n")  # runconfig already imports recipes: now a cycle, at function level
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "No import cycle among the modules of a package (siblings at every depth) BROKEN" in broken.stdout
    assert "Layers: each package imports only the ones below it KEPT" in broken.stdout
    assert "edgercnn.config" in broken.stdout and ".runconfig -> .recipes" in broken.stdout  # the cycle, named
