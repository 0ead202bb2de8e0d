"""`import stainfree` and `stainfree --help` stay light: no torch, matplotlib or scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "matplotlib", "sklearn")

CHILD = """
import json, sys
import stainfree as sf
sf.pp, sf.tl, sf.pl
if sys.argv[1] == "help":
    from stainfree.cli import main
    try:
        main(["--help"])
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def heavy_modules_after(what: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY), what], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_is_light():
    assert heavy_modules_after("import") == []


def test_help_is_light():
    assert heavy_modules_after("help") == []


def test_namespaces_load_on_first_use():
    import stainfree as sf

    assert sf.tl.rank_features.__module__ == "stainfree.tl.rank"
    assert sf.pl.confusion_matrix.__module__ == "stainfree.pl.classify"
    assert "measure" in dir(sf.pp)
    with pytest.raises(AttributeError, match="no_such_tool"):
        _ = sf.tl.no_such_tool
