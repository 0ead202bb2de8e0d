"""Training on two processes with torch.distributed (gloo on CPU), launched by torchrun (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from stainfree.datasets.synthetic import make_cells
from stainfree.ml.classifier import Classifier
from stainfree.ml.distributed import World, launched_world

pytest.importorskip("torch.distributed.run", reason="torch has no torch.distributed")


def _train(args, env_extra=None, launcher=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    done = subprocess.run(
        [sys.executable, *launcher, "-m", "stainfree", "train", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_two_processes_train_the_demo_as_well_as_one(tmp_path):
    cells = make_cells(90, size=32, random_state=3)  # 180 cells in 8 flasks
    flask = cells.table["flask"].astype(str).to_numpy()
    test_flasks = sorted(set(flask))[::4]  # one flask of each line held out
    train = cells.select(np.flatnonzero(~np.isin(flask, test_flasks)))
    test = cells.select(np.flatnonzero(np.isin(flask, test_flasks))).load()
    train.save(tmp_path / "train.cells")
    common = [str(tmp_path / "train.cells"), "--epochs", "25", "--batch-size", "16"]
    _train([*common, "-o", str(tmp_path / "one.safetensors")])
    two = _train(
        [*common, "-o", str(tmp_path / "two.safetensors")],
        launcher=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"),
    )
    assert two.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "train.cells", "two.safetensors"]
    y = test.labels
    scores = {}
    for name in ("one", "two"):
        pred = Classifier.load(tmp_path / f"{name}.safetensors").predict(test.images)
        # the held-out cells in four parts: the part-to-part spread is the noise the two are judged against
        parts = np.array_split(np.random.default_rng(0).permutation(len(y)), 4)
        scores[name] = [balanced_accuracy_score(y[p], pred[p]) for p in parts]
    one, two = np.mean(scores["one"]), np.mean(scores["two"])
    assert one > 0.8 and two > 0.8, scores
    assert abs(one - two) <= max(2 * np.std(scores["one"]), 0.05), scores


def test_the_world_comes_from_the_launcher(monkeypatch):
    from stainfree.utils import StainfreeError

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched_world() == World(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launched_world() == World(2, 4, 0) and not launched_world().is_main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(StainfreeError, match="rank 4 is not within a world of 4"):
        launched_world()
