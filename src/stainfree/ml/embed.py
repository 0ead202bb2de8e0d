"""Learning embeddings of cells without labels (Barlow Twins, autoencoders) and embedding cells with them."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from ..io.export import to_uns, write_h5ad
from ..progress import progress
from ..utils import StainfreeError, atomic_output_file, private_torch_rng, refuse_existing
from ._embed_loop import (
    DEFAULT_ARCH,
    build_network,
    check_training_cells,
    fit_pca,
    resolved_config,
    start_training,
)
from .models import inference_copy, network_side

logger = logging.getLogger(__name__)
EMBED_METHODS = ("slc", "barlow", "autoencoder", "pca")
STAGE_POOLINGS = ("stages", "stages+std")


@dataclasses.dataclass
class EmbedConfig:
    """Settings of an embedder; ``None`` means the method's default (the ``DEFAULT_*`` tables above).

    Parameters
    ----------
    method, model, epochs, batch_size, lr, dim, copies, augment, blackout, input_size, pooling, tta, seed, lambda_
        As commented below; ``method`` is one of :data:`EMBED_METHODS`, ``input_size`` ``None`` keeps the cells' size
        (PCA) or, for the networks, halves crops over 128 px (a 224 px crop costs four to five times a
        112 px one to train; the classifier does the same, :meth:`stainfree.ml.train.TrainConfig.for_data`),
        ``seed`` seeds the weights and the augmentation. :func:`embed_cells` has an example.
    """

    method: str = "barlow"
    model: str | None = None  # registry architecture (slc, barlow)
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    dim: int | None = None  # Barlow projector width (128), autoencoder bottleneck (64), PCA components (50)
    lambda_: float = 0.01  # Barlow Twins off-diagonal weight
    copies: int = 4  # SLC augmented copies of each cell per epoch
    augment: str | None = None
    blackout: str = "none"  # barlow: none, full or partial (needs masks)
    input_size: int | None = None
    pooling: str | None = None  # "stages" (every stage's mean activation), "stages+std" (and its std) or "last" (features())
    tta: str | None = None  # "dihedral": average the embedding over the 8 flips/90-degree rotations
    seed: int = 0

    def validate(self) -> None:
        from .transforms import augmentation_names

        if self.augment is not None:
            augmentation_names(self.augment)
        checks = [
            (
                self.method in EMBED_METHODS,
                f"unknown embedding method {self.method!r} (choose from {', '.join(EMBED_METHODS)}, model:PATH or embedder:PATH)",
            ),
            ((self.epochs is None or self.epochs >= 1) and self.batch_size >= 2, "epochs must be >= 1 and batch size >= 2"),
            (self.lr > 0 and (self.dim is None or self.dim >= 2) and self.copies >= 1, "lr must be > 0, dim >= 2 and copies >= 1"),
            (self.lambda_ >= 0, "lambda must be >= 0"),
            (self.input_size is None or self.input_size >= 8, f"input size must be at least 8 pixels, got {self.input_size}"),
            (self.blackout in ("none", "full", "partial"), f"blackout must be none, full or partial, got {self.blackout!r}"),
            (self.pooling in (None, *STAGE_POOLINGS, "last"), f"pooling must be stages, stages+std or last, got {self.pooling!r}"),
            (
                self.pooling not in STAGE_POOLINGS or self.method in ("slc", "barlow"),
                f"pooling {self.pooling!r} applies to slc and barlow, not {self.method}",
            ),
            (self.tta in (None, "none", "dihedral"), f"tta must be none or dihedral, got {self.tta!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise StainfreeError(message)


@dataclasses.dataclass
class Embedder:
    """A fitted embedder (made by :func:`fit_embedder`): the network or PCA, and all needed to embed new cells.

    Attributes
    ----------
    method, channels, input_size, normalisation, config, network, arch, width, pca, n_train_cells
        As saved in its file; ``config`` is an :class:`EmbedConfig` as a dict, ``width`` the embedding's length.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.embed import Embedder
    >>> pca = {"mean": np.zeros(4, np.float32), "components": np.eye(2, 4, dtype=np.float32)}
    >>> Embedder("pca", ["bf"], (2, 2), {"center": [0.0], "scale": [1.0]}, {}, pca=pca).transform(np.arange(4).reshape(1, 1, 2, 2))
    array([[0., 1.]], dtype=float32)
    """

    method: str
    channels: list[str]
    input_size: tuple[int, int]
    normalisation: dict
    config: dict
    network: object = None
    arch: str | None = None
    width: int | None = None
    pca: dict | None = None  # {"mean": (D,), "components": (k, D)}
    n_train_cells: int | None = None  # SLC: one output per training cell

    def prepare(self, images: np.ndarray) -> np.ndarray:
        from .classifier import resize_batch
        from .transforms import apply_normalisation

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(self.channels):
            raise StainfreeError(
                f"the embedder expects {len(self.channels)} channels ({', '.join(self.channels)}), got images of shape {images.shape}"
            )
        return resize_batch(apply_normalisation(images, self.normalisation), self.input_size)

    def transform(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """The embedding of each cell (N x D); with ``tta="dihedral"`` in the settings, the mean
        embedding of the cell's eight flips and 90-degree rotations."""
        import torch

        from .transforms import dihedral_views

        tta = self.config.get("tta") == "dihedral"
        net = inference_copy(self.network) if self.network is not None else None
        out = []
        for start in progress(range(0, len(images), batch_size), desc="embedding", unit="batches", log=logger, summary=False):
            x = torch.from_numpy(self.prepare(images[start : start + batch_size]))
            out.append(np.mean([self._embed_prepared(v, net) for v in (dihedral_views(x) if tta else [x])], axis=0))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def _embed_prepared(self, x, net=None) -> np.ndarray:
        """The embedding of a normalised, resized batch tensor (by ``net``, default the network)."""
        import torch

        if self.method == "pca":
            return (x.reshape(len(x), -1).numpy() - self.pca["mean"]) @ self.pca["components"].T
        with torch.inference_mode():
            net = (net if net is not None else self.network).eval()
            x = x.contiguous(memory_format=torch.channels_last)
            pooling = self.config.get("pooling")
            if pooling in STAGE_POOLINGS:
                maps = net.feature_maps(x)
                means = [m.mean((2, 3)) for m in maps]
                # the spread from the first two moments: 2-3x faster than Tensor.std on channels-last maps
                spread = (
                    [(m.square().mean((2, 3)) - mu.square()).clamp(min=0).sqrt() for m, mu in zip(maps, means)]
                    if pooling == "stages+std"
                    else []
                )
                return torch.cat(means + spread, 1).numpy()
            return net.features(x).numpy()

    @property
    def metadata(self) -> dict:
        return {
            "format": "stainfree.embedder",
            "version": 1,
            "method": self.method,
            "channels": self.channels,
            "input_size": list(self.input_size),
            "normalisation": self.normalisation,
            "config": self.config,
            "arch": self.arch,
            "width": self.width,
            "n_train_cells": self.n_train_cells,
        }

    def save(self, path: str | os.PathLike) -> Path:
        import torch

        from .classifier import write_model_file

        if self.method == "pca":
            state = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in self.pca.items()}
        else:
            state = self.network.state_dict()
        return write_model_file(path, state, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Embedder:
        from .classifier import read_model_file

        meta, state = read_model_file(path)
        if meta.get("format") != "stainfree.embedder":
            raise StainfreeError(f"{path}: a classifier, not an embedder (use it as model:{path})")
        emb = cls(
            meta["method"],
            meta["channels"],
            tuple(meta["input_size"]),
            meta["normalisation"],
            meta["config"],
            arch=meta.get("arch"),
            width=meta.get("width"),
        )
        if emb.method == "pca":
            emb.pca = {k: v.numpy() for k, v in state.items()}
        else:
            with private_torch_rng():  # initial weights, replaced below
                emb.network = build_network(
                    emb.method, emb.arch, len(emb.channels), emb.input_size[0], meta.get("n_train_cells") or 2, emb.config["dim"]
                )
            emb.network.load_state_dict(state)
            emb.network.eval()
        return emb


def fit_embedder(
    images: np.ndarray, *, channels, config: EmbedConfig | None = None, masks: np.ndarray | None = None
) -> tuple[Embedder, list[dict]]:
    """Train an embedder on cells without labels.

    Parameters
    ----------
    images : (N, C, H, W) array, zarr array or CellSet
        The cells. A zarr array or lazy CellSet whose prepared cells take more than
        :data:`stainfree.ml.data.IN_MEMORY_BYTES` is streamed from its store in pools
        (:class:`stainfree.ml.data.TrainingCells`), as classifier training is (not for PCA).
    channels : sequence of str
        Their channel names, stored with the embedder.
    config : EmbedConfig, optional
        The method and its settings (``None`` fields take the method's defaults).
    masks : (N, H, W) array or callable, optional
        The cells' own objects, for ``config.blackout`` (Barlow Twins); a callable takes rows
        and returns their masks (``CellSet.read_masks``, for a streamed set).

    Returns
    -------
    Embedder
        The fitted network (or PCA) with its normalisation; ``Embedder.transform`` embeds cells.
    list of dict
        One record per epoch (loss, seconds; for SLC how often copies were recognised), or the
        explained variance for PCA.

    Raises
    ------
    StainfreeError
        Too few cells for the method, blackout without masks, or stage pooling on a model
        without stages.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.embed import EmbedConfig, fit_embedder
    >>> cells = make_cells(8, size=24, random_state=0).load()
    >>> emb, history = fit_embedder(cells.images, channels=cells.channels, config=EmbedConfig(method="autoencoder", epochs=1))
    >>> emb.transform(cells.images).shape, len(history)
    ((16, 64), 1)
    """
    import torch

    from .data import TrainingCells, read_cells
    from .models import model_info
    from .transforms import fit_normalisation, normalisation_sample

    config = config or EmbedConfig()
    config.validate()
    pooling_asked = config.pooling
    config = resolved_config(config)
    if not hasattr(images, "read") and not hasattr(images, "oindex"):  # a CellSet or a zarr array may be streamed
        images = np.asarray(images)
    n = len(images)
    check_training_cells(n, config, masks)
    arch = config.model or DEFAULT_ARCH.get(config.method)
    side = int(config.input_size or (images.shape[2] if config.method == "pca" else network_side(images.shape[2])))
    if config.method == "autoencoder":
        side = max(8, int(round(side / 8)) * 8)
    norm_method = model_info(arch).normalisation if arch else "robust"
    if norm_method not in ("robust", "quantile"):
        norm_method = "robust"
    sample = read_cells(images, normalisation_sample(np.arange(n), random_state=config.seed))
    normalisation = fit_normalisation(sample, norm_method, random_state=config.seed)
    emb = Embedder(config.method, list(channels), (side, side), normalisation, dataclasses.asdict(config), arch=arch, n_train_cells=n)
    if config.method == "pca":
        return emb, fit_pca(emb, emb.prepare(read_cells(images, np.arange(n))), config)
    cells = TrainingCells(images, normalisation, (side, side), masks=masks)

    with private_torch_rng(config.seed):  # seeded weights
        net = build_network(config.method, arch, len(channels), side, n, config.dim)
        if config.pooling in STAGE_POOLINGS and not hasattr(net, "feature_maps"):
            if pooling_asked in STAGE_POOLINGS:
                raise StainfreeError(
                    f"pooling {pooling_asked!r} needs a convolutional model with stages (cnn3, yao2019, resnet_small), not {arch}"
                )
            emb.config["pooling"] = "last"  # the method's default, where the model allows it
        emb.network = net
        emb.width = emb._embed_prepared(torch.zeros(2, len(channels), side, side)).shape[1]
        training = start_training(net, cells, config)
        epochs = progress(range(1, config.epochs + 1), desc="training", unit="epochs", log=logger, every_s=math.inf, summary=False)
        history = [training.epoch(epoch) for epoch in epochs]
    net.eval()
    return emb, history


def augmentation_robustness(
    embedder: Embedder, images: np.ndarray, *, preset: str = "yao", n_cells: int = 200, copies: int = 8, random_state: int = 0
) -> dict:
    """How much augmentation moves a cell in the embedding, against how far apart cells are (Yao Fig. S5a).

    Returns the settings, ``within_cell_mean`` (mean Euclidean distance between augmented copies of a cell),
    ``between_cells_mean`` (between different cells) and their ``ratio``, well below 1 if augmenting hardly moves cells.

    Parameters
    ----------
    embedder, images : Embedder, numpy.ndarray or CellSet
        The embedder, and cells ``N x C x H x W`` in its channels.
    preset, n_cells, copies, random_state : str, int, int, int, default "yao", 200, 8, 0
        The augmentation, how many random cells, copies of each, and the seed of both choices.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.embed import Embedder, augmentation_robustness
    >>> emb = Embedder("pca", ["bf"], (4, 4), {"method": "cell"}, {}, pca={"mean": np.zeros(16), "components": np.eye(3, 16)})
    >>> sorted(augmentation_robustness(emb, np.random.default_rng(0).random((6, 1, 4, 4)), preset="flips", n_cells=4))
    ['between_cells_mean', 'cells', 'copies', 'preset', 'ratio', 'within_cell_mean']
    """
    import torch
    from scipy.spatial.distance import pdist

    from .data import read_cells
    from .transforms import apply_normalisation, augment

    rng = np.random.default_rng(random_state)
    pick = np.sort(rng.choice(len(images), min(n_cells, len(images)), replace=False))
    gen = torch.Generator().manual_seed(random_state)
    picked = read_cells(images, pick)
    originals = embedder.transform(picked)
    within = []
    x = torch.from_numpy(apply_normalisation(picked, embedder.normalisation))
    views = [augment(x, preset, generator=gen).numpy() for _ in range(copies)]
    # the views are already normalised: pass them through an identity normalisation
    identity = dataclasses.replace(embedder, normalisation={"method": "robust", "center": [0.0] * x.shape[1], "scale": [1.0] * x.shape[1]})
    embedded = np.stack([identity.transform(v) for v in views], axis=1)  # cells x copies x D
    for cell in embedded:
        within.append(pdist(cell).mean())
    between = pdist(originals)
    return {
        "cells": int(len(pick)),
        "copies": copies,
        "preset": preset,
        "within_cell_mean": float(np.mean(within)),
        "between_cells_mean": float(between.mean()),
        "ratio": float(np.mean(within) / max(between.mean(), 1e-12)),
    }


def embed_cells(
    cells,
    out: str | os.PathLike | None = None,
    *,
    method: str | None = None,
    config: EmbedConfig | None = None,
    save_model: str | os.PathLike | None = None,
    force: bool = False,
    workers: int = 0,
    scheduler: str | None = None,
):
    """Embed a CellSet and return an AnnData: ``obs`` the per-cell table (with ``cell_id``),
    ``obsm['X_<method>']`` the embedding, ``uns['stainfree_embed']`` the settings and history.

    Parameters
    ----------
    cells : CellSet
    out, save_model, force : path, path, bool, default None, None, False
        Also write the ``.h5ad`` and the trained embedder, both only once the embedding is done and
        each through a temporary name, so an interrupted call leaves neither; ``force`` replaces existing files.
    method, config : str, EmbedConfig, optional
        One of :data:`EMBED_METHODS` (trained with ``config``; default ``config.method``, else ``"barlow"``),
        ``model:PATH`` (a classifier's penultimate layer) or ``embedder:PATH`` (a saved embedder applied to new cells).
    workers, scheduler : int, str, optional
        Embed blocks of cells (after any training, which runs here) on a local Dask cluster of
        ``workers`` processes or a running ``scheduler`` (:func:`stainfree.parallel.dask_client`);
        the embedding is the serial one.

    Examples
    --------
    >>> from stainfree.datasets.synthetic import make_cells
    >>> from stainfree.ml.embed import EmbedConfig, embed_cells
    >>> embed_cells(make_cells(n_per_class=4, size=16), method="pca", config=EmbedConfig(dim=3)).obsm["X_pca"].shape
    (8, 3)
    """
    t0 = time.monotonic()
    refuse_existing(out, force=force)
    refuse_existing(save_model, force=force)
    history: list[dict] = []
    emb = None
    method = method or (config.method if config is not None else "barlow")
    if method.startswith(("model:", "embedder:")):
        kind, _, path = method.partition(":")
        if kind == "model":
            from .classifier import Classifier

            model = Classifier.load(path)
        else:
            model = Embedder.load(path)
        missing = [c for c in model.channels if c not in cells.channels]
        if missing:
            raise StainfreeError(f"the cells lack channel {missing[0]!r} that {path} needs (cells have: {', '.join(cells.channels)})")
        cells = cells.select_channels(model.channels)
        x = _embed_in_blocks(model, cells, workers, scheduler)
        key = "X_model" if kind == "model" else f"X_{model.method}"
        settings = {"method": method, "source": str(path)}
    else:
        config = dataclasses.replace(config or EmbedConfig(), method=method)
        config.validate()
        masks = cells.read_masks if config.blackout != "none" and cells.has_masks else None
        emb, history = fit_embedder(cells, channels=cells.channels, config=config, masks=masks)  # streamed when large
        x = _embed_in_blocks(emb, cells, workers, scheduler)
        key = f"X_{method}"
        settings = {"method": method, **emb.config, "arch": emb.arch, "width": emb.width}
        settings["robustness"] = augmentation_robustness(emb, cells, preset="yao", random_state=config.seed)
        logger.info("augmented copies of a cell lie %.2f times as far apart as different cells", settings["robustness"]["ratio"])
    settings.update({"channels": list(cells.channels), "n_cells": len(cells), "seconds": round(time.monotonic() - t0, 1)})
    adata = cells.to_anndata(x, key=key)
    adata.uns["stainfree_embed"] = to_uns({"key": key, "settings": settings, "history": history})
    # both files under temporary names first, moved into place together: an interrupt leaves neither
    with contextlib.ExitStack() as stack:
        if save_model is not None and emb is not None:
            emb.save(stack.enter_context(atomic_output_file(save_model)))
        if out is not None:
            write_h5ad(adata, stack.enter_context(atomic_output_file(out)))
    return adata


#: Cells a task embeds (a multiple of the 256-cell batches, so the batches are the serial run's).
EMBED_BLOCK = 4096


def _embed_block(block: tuple[int, int], *, model, cells) -> np.ndarray:
    start, stop = block
    images = cells.read(slice(start, stop))
    return model.transform(images) if isinstance(model, Embedder) else model.embed(images)


def _embed_in_blocks(model, cells, workers: int, scheduler: str | None) -> np.ndarray:
    """The embedding of every cell by a classifier or an embedder, block by block, here or on Dask."""
    from ..parallel import map_cell_blocks

    task = functools.partial(_embed_block, model=model, cells=cells)
    return np.concatenate(
        map_cell_blocks(task, len(cells), EMBED_BLOCK, workers=workers, scheduler=scheduler, desc="embedding", log=logger)
    )
