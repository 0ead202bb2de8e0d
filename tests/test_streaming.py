"""Training streamed from the store (issue 18): the pools cover every cell once and read the store
in order, the streamed normalisation is the in-memory one, and a streamed fit learns as well."""

from __future__ import annotations

import numpy as np
import pytest

from stainfree.core.store import open_cellset
from stainfree.datasets.synthetic import make_cells
from stainfree.ml import data
from stainfree.ml.data import TrainingCells
from stainfree.ml.train import TrainConfig, fit


def test_streamed_batches_cover_each_cell_once_from_one_pool(monkeypatch):
    monkeypatch.setattr(data, "POOL_CELLS", 7)
    images = np.arange(30 * 4, dtype=np.float32).reshape(30, 1, 2, 2)
    cells = TrainingCells(images, {"method": "cell"}, (2, 2), in_memory=False)
    order = np.random.default_rng(0).permutation(30)[:25]
    batches = list(cells.batches(order, 3, rng=np.random.default_rng(1)))
    rows = np.concatenate([b for b, _, _ in batches])
    assert sorted(rows.tolist()) == sorted(order.tolist())
    pools = [set(np.sort(order)[s : s + 7]) for s in range(0, 25, 7)]
    for b, x, _ in batches:
        assert any(set(b.tolist()) <= p for p in pools)  # a batch never mixes two pools
        assert np.allclose(x.numpy(), cells.take(b)[0].numpy())  # each row's own cell
    memory = TrainingCells(images, {"method": "cell"}, (2, 2), in_memory=True)
    assert np.array_equal(memory.take(order)[0].numpy(), cells.take(order)[0].numpy())


def test_streamed_fit_matches_in_memory_learning(tmp_path, monkeypatch):
    path = make_cells(48, size=24, random_state=2).save(tmp_path / "s.cells")
    lazy = open_cellset(path)
    config = TrainConfig(epochs=12, batch_size=16, val_fraction=0.2)
    held = make_cells(30, size=24, random_state=9).load()
    in_memory, _ = fit(lazy.images, lazy.labels, channels=lazy.channels, config=config)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(data, "POOL_CELLS", 32)
    streamed, history = fit(lazy, lazy.labels, channels=lazy.channels, config=config)
    assert streamed.normalisation == in_memory.normalisation
    assert len(history) >= 1 and "val_balanced_accuracy" in history[-1]
    truth = held.labels
    accuracy = [np.mean(np.asarray(m.classes)[m.predict_proba(held.images, tta=False).argmax(1)] == truth) for m in (in_memory, streamed)]
    print("held-out accuracy in memory, streamed:", accuracy)
    assert accuracy[1] >= 0.75 and abs(accuracy[0] - accuracy[1]) <= 0.15, accuracy


def test_blackout_reads_masks_of_a_streamed_set(monkeypatch):
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)
    images = np.ones((6, 1, 8, 8), np.float32)
    masks = np.zeros((6, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    asked = []

    def read_masks(rows):
        asked.append(np.asarray(rows).tolist())
        return masks[rows]

    cells = TrainingCells(images, {"method": "cell"}, (4, 4), masks=read_masks)
    assert not cells.in_memory
    (_, x, m), *_ = list(cells.batches(np.arange(6), 6, shuffle=False))
    assert asked == [[0, 1, 2, 3, 4, 5]] and m.shape == (6, 1, 4, 4) and bool(m[:, 0, 1:3, 1:3].all())
    with pytest.raises(Exception, match="blackout"):
        fit(images, ["a", "b"] * 3, channels=["bf"], config=TrainConfig(epochs=1, blackout="full"))
