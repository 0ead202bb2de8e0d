import json
import subprocess
import sys

import numpy as np
import pytest

import stainfree as sf
from conftest import run_cli as run
from conftest import write_png


def folders(root):
    for cls in ("A", "B"):
        for i in range(3):
            write_png(root / cls / f"{cls}-{i:06d}.png", np.full((6, 6), 50 * (cls == "B") + i, np.uint8))
    return root


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("import", "info", "demo", "synth", "train", "features", "explain", "saliency", "report", "embed", "cluster"):
        assert cmd in out.stdout


def test_import_then_info(tmp_path):
    src = folders(tmp_path / "src")
    out = run("import", src, "-o", tmp_path / "x.cells", "--group", r"field=-(\d{6})")
    assert out.returncode == 0, out.stderr
    assert "layout folders, 6 cells" in out.stdout  # the plan is shown before writing
    info = run("info", tmp_path / "x.cells")
    assert info.stdout.splitlines()[0] == "6 cells, 1 channel (grey), 6x6 px, uint8"
    assert "group field: 6 distinct" in info.stdout
    js = json.loads(run("info", tmp_path / "x.cells", "--json").stdout)
    assert js["classes"] == {"A": 3, "B": 3}


@pytest.mark.parametrize(
    "args,message",
    [
        (["import", "{tmp}/nowhere", "-o", "{tmp}/o.cells"], "nowhere: no such file or folder"),
        (["import", "{src}", "-o", "{tmp}/o.cells", "--group", "field=zzz"], "matches no file name"),
        (["import", "{src}", "-o", "{tmp}/o.cells", "--layout", "ifc"], "not named <id>_Ch<k>"),
        (["import", "{src}", "-o", "{tmp}/o.cells", "--merge-classes", "A,C=AC"], "cannot merge class 'C'"),
        (["import", "{src}", "-o", "{src}"], "already exists; pass --force"),
        (["import", "{src}", "-o", "{src}", "--force"], "not a stainfree output"),
        (["info", "{src}"], "not a CellSet"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, args, message):
    src = folders(tmp_path / "src")
    out = run(*[a.format(tmp=tmp_path, src=src) for a in args])
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "o.cells").exists()
    assert sorted(p.name for p in src.iterdir()) == ["A", "B"]  # the user's folder is untouched


def test_the_console_command_exits_1_with_one_line(tmp_path):
    """The in-process runner above reproduces `stainfree.cli.main`; this checks main itself."""
    out = subprocess.run([sys.executable, "-m", "stainfree", "info", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path}: not a CellSet (no cellset.json; an interrupted write?)"]


def test_synth_writes_a_labelled_grouped_set(tmp_path):
    out = run("synth", "-o", tmp_path / "s.cells", "--cells-per-class", 5, "--size", 32, "--flasks-per-line", 2)
    assert out.returncode == 0, out.stderr
    cs = sf.open_cellset(tmp_path / "s.cells")
    assert cs.shape == (10, 1, 32, 32) and cs.groups == ["flask"]


def test_ctrl_c_leaves_no_output_and_says_so(tmp_path):
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "stainfree", "demo", "-o", tmp_path / "run", "--epochs", "40"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stderr:  # wait until training is under way
        if line.startswith("epoch 2/"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted: no partial output was left behind"
    assert list(tmp_path.iterdir()) == []
