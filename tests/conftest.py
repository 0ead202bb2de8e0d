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


def run_cli(*args, cwd=None):
    """Run ``python -m stainfree ARGS``; returns the CompletedProcess (stdout, stderr, returncode)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "stainfree", *map(str, args)], capture_output=True, text=True, cwd=cwd)
