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
    monkeypatch.setattr(data, "RUN_CELLS", 2)
    images = np.arange(30 * 4, dtype=np.float32).reshape(30, 1, 2, 2)
    cells = TrainingCells(images, {"method": "cell"}, (2, 2), in_memory=False)
    reads = []
    prepare = cells._prepare
    monkeypatch.setattr(cells, "_prepare", lambda rows: (reads.append(rows.tolist()), prepare(rows))[1])
    order = np.random.default_rng(0).permutation(30)[:25]
    batches = list(cells.batches(order, 3, rng=np.random.default_rng(1)))
    rows = np.concatenate([b for b, _, _ in batches])
    assert sorted(rows.tolist()) == sorted(order.tolist())
    assert sorted(r for pool in reads for r in pool) == sorted(order.tolist())  # each cell read once
    assert all(pool == sorted(pool) and len(pool) <= 7 for pool in reads)  # a pool is read in storage order
    runs = [set(np.sort(order)[s : s + 2].tolist()) for s in range(0, 25, 2)]
    assert all(any(run <= set(pool) for pool in reads) for run in runs)  # runs stay whole
    span = np.sort(order)
    assert any(span.tolist().index(p[-1]) - span.tolist().index(p[0]) >= len(p) for p in reads)  # pools reach across the set
    for b, x, _ in batches:
        assert any(set(b.tolist()) <= set(p) for p in reads)  # a batch never mixes two pools
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


def test_evaluate_streams_a_set_too_large_for_memory(tmp_path, monkeypatch):
    from stainfree.core.cellset import CellSet
    from stainfree.eval import _job
    from stainfree.eval.evaluate import evaluate
    from stainfree.utils import StainfreeError

    lazy = open_cellset(make_cells(40, size=24, random_state=4).save(tmp_path / "e.cells"))
    config = TrainConfig(epochs=20, batch_size=16)
    options = {"protocol": "kfold", "n_folds": 2, "config": config, "baselines": ["majority"], "n_boot": 0, "tta": False}
    in_memory = evaluate(lazy, **options)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(data, "POOL_CELLS", 16)
    monkeypatch.setattr(data.TrainingCells, "run_length", 4)  # the set is stored class by class: pools must mix runs
    monkeypatch.setattr(_job, "PREDICT_BLOCK", 7)  # test folds read in blocks of 7 cells
    monkeypatch.setattr(CellSet, "load", lambda self: pytest.fail("a streamed evaluation loaded the whole set"))
    streamed = evaluate(lazy, **options, final_model=True)
    assert sorted(streamed.predictions["cell_id"]) == sorted(in_memory.predictions["cell_id"])  # every cell tested once
    ba = [e.metrics["summary"]["balanced_accuracy"]["mean"] for e in (in_memory, streamed)]
    print("balanced accuracy in memory, streamed:", ba)
    assert ba[1] >= 0.75 and abs(ba[0] - ba[1]) <= 0.15, ba
    assert streamed.model is not None
    with pytest.raises(StainfreeError, match="80 cells do not fit in memory .*--search needs them there"):
        from stainfree.eval.search import Search

        evaluate(lazy, **options, search=Search())


def test_embedder_trains_streamed_from_the_store(tmp_path, monkeypatch):
    from stainfree.ml.embed import EmbedConfig, fit_embedder

    lazy = open_cellset(make_cells(40, size=24, random_state=6).save(tmp_path / "m.cells"))
    config = EmbedConfig(method="slc", model="cnn3", epochs=6, batch_size=16, copies=2)
    in_memory, memory_history = fit_embedder(lazy.images, channels=lazy.channels, config=config)
    monkeypatch.setattr(data, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(data, "POOL_CELLS", 16)
    monkeypatch.setattr(data.TrainingCells, "run_length", 4)
    reads = []
    prepare = data.TrainingCells._prepare
    monkeypatch.setattr(data.TrainingCells, "_prepare", lambda self, rows: (reads.append(len(rows)), prepare(self, rows))[1])
    streamed, history = fit_embedder(lazy, channels=lazy.channels, config=config)
    assert max(reads) <= 16 and sum(reads) == 6 * 2 * len(lazy)  # pools only: every copy of every cell, each epoch
    assert streamed.normalisation == in_memory.normalisation and len(history) == 6
    losses = [[h["loss"] for h in hist] for hist in (memory_history, history)]
    print("SLC losses in memory, streamed:", losses)
    # it learns: the loss falls by as much as in memory (copies of 80 cells told apart)
    assert losses[1][-1] < losses[1][0] - 0.15 and abs(losses[1][-1] - losses[0][-1]) < 0.25, losses
    assert streamed.transform(lazy.images).shape == (80, in_memory.width)
