"""Fields on a Dask cluster (issue 18): the same cells as the serial run, a failing task named, an
unreachable scheduler one line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stainfree.core.store import open_cellset as sf_open
from stainfree.datasets.synthetic import make_field
from stainfree.io.fields import Field
from stainfree.parallel import dask_client, map_tasks
from stainfree.seg.pipeline import cells_from_fields
from stainfree.utils import StainfreeError

pytest.importorskip("distributed", reason='dask.distributed is not installed (pip install "dask[distributed]")')


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", worker_dashboard_address=None) as local:
        yield local


def test_fields_on_a_cluster_give_the_serial_cells(cluster, tmp_path):
    fields = []
    for k in range(5):
        truth = make_field((192, 192), n_cells=10, random_state=20 + k)
        fields.append(Field(np.stack([truth.brightfield, truth.fluorescence.astype(np.uint8)]), ["bf", "fluo"], f"f{k}", f"f{k}.tif"))
    options = {"size": 32, "method": "classical", "label_channel": "fluo", "keep_labels": True}
    serial = cells_from_fields(fields, **options)
    assert len(serial.table) > 20
    # on the worker processes of a running cluster, and on the threads of a local one (--workers 2)
    for parallel in (
        cells_from_fields(fields, **options, scheduler=cluster.scheduler_address),
        cells_from_fields(fields, **options, workers=2),
    ):
        np.testing.assert_array_equal(parallel.images, serial.images)
        np.testing.assert_array_equal(parallel.masks, serial.masks)
        pd.testing.assert_frame_equal(parallel.table, serial.table)
        assert parallel.per_field == serial.per_field
        assert all(np.array_equal(parallel.label_images[k], serial.label_images[k]) for k in serial.label_images)
    # each task saving its own crops (what `segment` does): the same cells, read back a field at a time
    spilled = cells_from_fields(fields, **options, workers=2, spill=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir())[:2] == ["f0.crops.npy", "f0.masks.npy"] and len(list(tmp_path.iterdir())) == 10
    np.testing.assert_array_equal(np.asarray(spilled.images), serial.images)
    np.testing.assert_array_equal(np.asarray(spilled.masks), serial.masks)
    assert [len(p) for p in spilled.images.parts()] == [s["cells"] for s in serial.per_field]


def test_features_on_a_cluster_give_the_serial_table(cluster, tmp_path):
    from stainfree.datasets.synthetic import make_cells
    from stainfree.pp.features import measure

    cells = sf_open(make_cells(30, size=32, random_state=4).save(tmp_path / "c.cells"))
    serial = measure(cells, batch_size=16, texture_scales=[3])
    parallel = measure(cells, batch_size=16, texture_scales=[3], scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(parallel, serial)
    assert len(serial) == 60 and serial.shape[1] > 100


def test_a_task_that_fails_is_named_after_its_retry(cluster):
    from distributed import Client

    calls = []

    def sqrt_counted(x):
        calls.append(x)
        return math.sqrt(x)

    with Client(cluster) as client:
        assert map_tasks(math.sqrt, [4.0, 9.0], client=client) == [2.0, 3.0]
        with pytest.raises(StainfreeError, match=r"^field b: failed on a worker after 2 tries \(ValueError: math domain error\)"):
            map_tasks(math.sqrt, [4.0, -1.0], client=client, names=["field a", "field b"])
    with dask_client(workers=2, threads=True) as pool:  # the same on threads of this process
        assert map_tasks(math.sqrt, [4.0, 9.0, 16.0], client=pool) == [2.0, 3.0, 4.0]
        with pytest.raises(StainfreeError, match=r"^field b: failed on a worker after 2 tries \(ValueError: math domain error\)"):
            map_tasks(sqrt_counted, [4.0, -1.0], client=pool, names=["field a", "field b"])
    assert sorted(calls) == [-1.0, -1.0, 4.0]


def test_bad_cluster_options_are_one_line():
    with pytest.raises(StainfreeError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        with dask_client(scheduler="tcp://127.0.0.1:9", timeout="2s"):
            pass
    with pytest.raises(StainfreeError, match="not both"):
        with dask_client(workers=2, scheduler="tcp://127.0.0.1:9"):
            pass


def test_predict_and_embed_on_a_cluster_give_the_serial_results(cluster, tmp_path, monkeypatch):
    from stainfree.datasets.synthetic import make_cells
    from stainfree.ml import embed
    from stainfree.ml.predict import predict_cells
    from stainfree.ml.train import TrainConfig, fit

    cells = sf_open(make_cells(40, size=24, random_state=5).save(tmp_path / "c.cells"))
    clf, _ = fit(cells.images, cells.labels, channels=cells.channels, config=TrainConfig(epochs=1, batch_size=16))
    serial = predict_cells(clf, cells, batch_size=32)
    parallel = predict_cells(clf, cells, batch_size=32, scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(parallel, serial)
    assert len(serial) == 80 and serial["prob_round"].nunique() > 40
    clf.save(tmp_path / "m.safetensors")
    monkeypatch.setattr(embed, "EMBED_BLOCK", 32)  # three blocks of the 80 cells
    method = f"model:{tmp_path / 'm.safetensors'}"
    here = embed.embed_cells(cells, method=method).obsm["X_model"]
    there = embed.embed_cells(cells, method=method, scheduler=cluster.scheduler_address).obsm["X_model"]
    np.testing.assert_array_equal(there, here)
    assert here.shape[0] == 80 and np.unique(here[:, 0]).size > 40
