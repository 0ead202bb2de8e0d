"""No side effects on the user's Python process: matplotlib's backend, figures and rcParams,
the global NumPy and torch random streams, and logging handlers stay as the user left them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

# A user's session: a backend of their own (svg, not Agg), an open pyplot figure and an rcParam
# of their own. It then imports every stainfree module, draws every figure of stainfree.pl (by
# running each function's doctest) and the report's own figure, and logs progress.
CHILD = r"""
import base64, doctest, importlib, json, logging, pkgutil, sys, tempfile
from pathlib import Path

import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

plt.figure()
plt.plot([0, 1], [1, 0])
matplotlib.rcParams["lines.linewidth"] = 3.0
root_handlers = list(logging.getLogger().handlers)
rc = dict(matplotlib.rcParams)
backend, figures = matplotlib.get_backend(), plt.get_fignums()
numpy_state = np.random.get_state()

import stainfree
import stainfree.pl as pl

modules = [m.name for m in pkgutil.walk_packages(stainfree.__path__, "stainfree.") if not m.name.endswith("__main__")]
for name in modules:
    importlib.import_module(name)
tries = {}
for name in pl.__all__:
    module = importlib.import_module(pl._EXPORTS[name], "stainfree.pl")
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(getattr(module, name), name, module=module):
        runner.run(test)
    tries[name] = [runner.tries, runner.failures]

from stainfree.report.sections import _section_composition
from stainfree.progress import progress

with tempfile.TemporaryDirectory() as d:
    table = pd.DataFrame({"field": ["f1", "f2"], "cells": [10, 4], "fraction_a": [0.3, 0.5], "fraction_b": [0.7, 0.5]})
    table.to_csv(f"{d}/composition.csv", index=False)
    html = _section_composition(type("Run", (), {"file": staticmethod(lambda n: Path(d) / n)})())
png = base64.b64decode(html.split("base64,")[1].split('"')[0])
list(progress(range(3), desc="counting"))

loggers = logging.Logger.manager.loggerDict
print(json.dumps({
    "modules": len(modules),
    "tries": tries,
    "composition_png": png[:8] == b"\x89PNG\r\n\x1a\n",
    "backend": [backend, matplotlib.get_backend()],
    "figures": [figures, plt.get_fignums()],
    "rc_changed": sorted(k for k in rc if rc[k] != matplotlib.rcParams[k]),
    "pyplot_figures_of_stainfree": len(plt.get_fignums()) - len(figures),
    "numpy_state_kept": all(np.array_equal(a, b) for a, b in zip(numpy_state, np.random.get_state())),
    "root_handlers_kept": logging.getLogger().handlers == root_handlers,
    "stainfree_handlers": sorted(n for n, lg in loggers.items() if n.startswith("stainfree") and getattr(lg, "handlers", None)),
}))
"""


def test_figures_leave_the_users_matplotlib_and_logging_alone():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["modules"] > 50
    import stainfree.pl as pl

    assert set(out["tries"]) == set(pl.__all__)  # every public figure function ran, by its doctest
    assert {name: t for name, t in out["tries"].items() if t[0] == 0 or t[1]} == {}
    assert out["composition_png"]
    assert out["backend"] == ["svg", "svg"]
    assert out["figures"] == [[1], [1]]  # the user's figure still open, no figure of ours in pyplot
    assert out["rc_changed"] == []
    assert out["numpy_state_kept"]
    assert out["root_handlers_kept"]
    assert out["stainfree_handlers"] == []  # only the CLI sets up logging


def _global_streams():
    """The global torch and NumPy random states, as bytes (equal when nothing drew from them)."""
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return torch.random.get_rng_state().numpy().tobytes(), (kind, keys.tobytes(), pos, has_gauss, gauss)


def test_loading_models_leaves_global_random_streams_alone(tmp_path):
    """Building a network to load weights into draws initial weights; the caller's streams must not move."""
    from stainfree.ml._embed_loop import build_network
    from stainfree.ml.classifier import Classifier
    from stainfree.ml.embed import Embedder
    from stainfree.ml.models import create_model
    from stainfree.seg.model import Segmenter

    Classifier(create_model("cnn3", 1, 2, 16), "cnn3", {}, ["a", "b"], ["bf"], (16, 16), {"method": "cell"}).save(
        tmp_path / "c.safetensors"
    )
    network = build_network("autoencoder", None, 1, 16, 2, 4)
    Embedder("autoencoder", ["bf"], (16, 16), {"method": "cell"}, {"dim": 4}, network=network).save(tmp_path / "e.safetensors")
    before = _global_streams()
    clf = Classifier.load(tmp_path / "c.safetensors")
    emb = Embedder.load(tmp_path / "e.safetensors")
    seg = Segmenter.load("builtin:phase")
    assert _global_streams() == before
    assert clf.classes == ["a", "b"] and seg.arch == "unet"
    saved = network.state_dict()  # the weights are the saved ones, not a fresh draw
    assert all(v.equal(saved[k]) for k, v in emb.network.state_dict().items())


def test_training_leaves_global_random_streams_alone():
    """fit, fit_embedder and train_segmenter draw from their own seeded streams only."""
    from stainfree.datasets.synthetic import make_cells, make_field
    from stainfree.ml.embed import EmbedConfig, fit_embedder
    from stainfree.ml.train import TrainConfig, fit
    from stainfree.seg.training import SegTrainConfig, train_segmenter

    cells = make_cells(8, size=16, random_state=0).load()
    field = make_field((64, 64), n_cells=4)
    before = _global_streams()
    fit(cells.images, cells.labels, channels=cells.channels, config=TrainConfig(model="cnn3", input_size=16, epochs=1, batch_size=8))
    fit_embedder(cells.images, channels=cells.channels, config=EmbedConfig(method="autoencoder", epochs=1, dim=4, batch_size=8))
    config = SegTrainConfig(steps=2, batch_size=2, crop=32, width=4, depth=2, diameter=12)
    train_segmenter([field.brightfield[None]], [field.labels], channels=["phase"], config=config)
    assert _global_streams() == before
