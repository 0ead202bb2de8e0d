from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data():
    """The real data sets beside the checkout (../shared/data); skipped on a user's fresh clone."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (only present on development and CI machines)")
    return SHARED_DATA


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_tif(path: Path, array: np.ndarray) -> Path:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


class CliResult:
    """What a command printed and its exit status, as a subprocess would report them."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, cwd=None):
    """Run ``stainfree ARGS`` in this process through typer's CliRunner (no 2 s torch import per
    call); user errors become the one line and exit status that ``stainfree.cli.main`` gives.
    Tests of a real exit code or a signal start ``python -m stainfree`` themselves."""
    import logging
    import os

    from typer.testing import CliRunner

    from stainfree.cli import app
    from stainfree.cli.app import error_exit

    before = os.getcwd()
    log = logging.getLogger("stainfree")
    saved = (log.handlers[:], log.level, log.propagate)  # the command sets up its own logging
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(before)
        log.handlers[:], log.level, log.propagate = saved
    stdout, stderr, status = result.stdout, result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        handled = error_exit(result.exception)
        if handled is None:
            raise result.exception
        stderr += handled[0] + "\n"
        status = handled[1]
    return CliResult(status, stdout, stderr)


@pytest.fixture(autouse=True)
def plain_log_records():
    """napari's pytest plugin (installed with the napari extra) sets, for the whole session, a
    log-record factory that turns every logging argument but int and float into text, so a numpy
    integer under ``%d`` fails; each test here gets logging's own records."""
    import logging

    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    yield
    logging.setLogRecordFactory(factory)
