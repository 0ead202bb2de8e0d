"""The API reference builds from the docstrings with no warning (issue 14)."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api"


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is a dev dependency (pip install -e '.[dev]')")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "html" / "index.html").is_file()
    page = (tmp_path / "html" / "index.html").read_text()
    for name in ("stainfree.seg.pipeline.cells_from_fields", "stainfree.tl.rank.rank_features", "stainfree.pp.adata.measure_cells"):
        assert f'id="{name}"' in page, f"{name} is missing from the API reference"


def test_every_public_module_is_in_the_reference():
    listed = (DOCS / "index.rst").read_text()
    package = DOCS.parents[1] / "src" / "stainfree"
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if path.name.startswith("_") or parts[0] == "cli":
            continue
        assert f".. automodule:: stainfree.{'.'.join(parts)}" in listed, f"stainfree.{'.'.join(parts)} is not in docs/api/index.rst"
