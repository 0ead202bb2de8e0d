"""The training behind :func:`stainfree.ml.embed.fit_embedder`: the networks, the method defaults, one
epoch of each method. Internal: use :func:`~stainfree.ml.embed.fit_embedder`."""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np

from ..utils import StainfreeError

logger = logging.getLogger("stainfree.ml.embed")
DEFAULT_ARCH = {"slc": "yao2019", "barlow": "resnet_small"}
DEFAULT_AUGMENT = {"slc": "yao", "barlow": "engberg", "autoencoder": "flips"}
DEFAULT_DIM = {"pca": 50, "slc": 64, "barlow": 128, "autoencoder": 64}
DEFAULT_EPOCHS = {"barlow": 30}  # others: 20
DEFAULT_POOLING = {"barlow": "stages+std"}  # others: "last"


def autoencoder(in_channels: int, input_size: int, dim: int, widths=(32, 64, 128)):
    """Encoder of stride-2 conv blocks to a ``dim`` bottleneck, mirrored decoder, no skips."""
    from torch import nn

    side = input_size // 2 ** len(widths)

    class AutoEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            enc, c = [], in_channels
            for w in widths:
                enc += [
                    nn.Conv2d(c, w, 3, stride=2, padding=1),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(w, w, 3, padding=1),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                ]
                c = w
            self.encoder = nn.Sequential(*enc)
            self.to_code = nn.Linear(c * side * side, dim)
            self.from_code = nn.Linear(dim, c * side * side)
            dec = []
            for w in list(widths[::-1][1:]) + [widths[0]]:
                dec += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
            dec.append(nn.Conv2d(c, in_channels, 3, padding=1))
            self.decoder = nn.Sequential(*dec)
            self.c, self.side = widths[-1], side

        def features(self, x):
            return self.to_code(self.encoder(x).flatten(1))

        def forward(self, x):
            code = self.features(x)
            return self.decoder(self.from_code(code).view(len(x), self.c, self.side, self.side))

    return AutoEncoder()


def build_network(method: str, arch: str | None, in_channels: int, input_size: int, n_cells: int, dim: int):
    """The network trained by ``method`` (its embedding width comes from :meth:`Embedder._embed_prepared`)."""
    from torch import nn

    from .models import create_model

    if method == "autoencoder":
        return autoencoder(in_channels, input_size, dim)
    net = create_model(arch, in_channels, max(n_cells, 2) if method == "slc" else 2, input_size)
    if method == "barlow":
        import torch

        with torch.no_grad():
            width = net.eval().features(torch.zeros(2, in_channels, input_size, input_size)).shape[1]
        net.projector = nn.Sequential(nn.Linear(width, 4 * dim), nn.BatchNorm1d(4 * dim), nn.ReLU(inplace=True), nn.Linear(4 * dim, dim))
    return net


def resolved_config(config):
    """``config`` with the method's defaults filled in."""
    return dataclasses.replace(
        config,
        dim=config.dim or DEFAULT_DIM[config.method],
        epochs=config.epochs or DEFAULT_EPOCHS.get(config.method, 20),
        pooling=config.pooling or DEFAULT_POOLING.get(config.method, "last"),
        tta=config.tta or "none",  # "dihedral" costs 8 forward passes per cell
    )


def check_training_cells(n: int, config, masks) -> None:
    minimum = {"pca": 3, "slc": 10, "barlow": 16, "autoencoder": 8}[config.method]
    if n < minimum:
        raise StainfreeError(f"{n} cells are too few for {config.method} (at least {minimum})")
    if config.blackout != "none" and masks is None:
        raise StainfreeError("--blackout needs cell masks (cells from `stainfree segment`)")


def fit_pca(emb, x_all: np.ndarray, config) -> list[dict]:
    from sklearn.decomposition import PCA

    n = len(x_all)
    k = min(config.dim, n - 1, x_all[0].size)
    pca = PCA(n_components=k, random_state=config.seed).fit(x_all.reshape(n, -1))
    emb.pca = {"mean": pca.mean_.astype(np.float32), "components": pca.components_.astype(np.float32)}
    emb.width = k
    return [{"explained_variance": float(pca.explained_variance_ratio_.sum())}]


@dataclasses.dataclass
class EmbedTraining:
    """What the epochs of one embedder's training share."""

    config: object
    net: object
    cells: object  # data.TrainingCells: the prepared cells (and masks), in memory or streamed
    preset: str
    optimiser: object
    scheduler: object
    generator: object
    barlow: object = None

    def loss(self, idx, x, masks) -> tuple[object, int]:
        """The loss of the batch of cells ``idx`` (prepared: ``x``, their masks or None) and, for
        SLC, how many cells' copies were recognised."""
        import torch

        from .transforms import augment, blackout_outside

        config, gen = self.config, self.generator
        if config.method == "slc":
            logits = self.net(augment(x, self.preset, generator=gen))
            return torch.nn.functional.cross_entropy(logits, idx), int((logits.argmax(1) == idx).sum())
        if config.method == "barlow":
            views = []
            for _ in range(2):
                v = augment(x, self.preset, generator=gen)
                if masks is not None:
                    half = torch.rand(len(v), generator=gen) < 0.5
                    if half.any():
                        v[half] = blackout_outside(v[half], masks[half], mode=config.blackout, generator=gen)
                views.append(v)
            return self.barlow(self.net.projector(self.net.features(views[0])), self.net.projector(self.net.features(views[1]))), 0
        v = augment(x, self.preset, generator=gen)
        return torch.nn.functional.mse_loss(self.net(v), v), 0

    def epoch(self, epoch: int) -> dict:
        import torch

        t0 = time.monotonic()
        config, gen, n = self.config, self.generator, len(self.cells)
        self.net.train()
        order = torch.randperm(n, generator=gen).repeat(config.copies if config.method == "slc" else 1)
        order = order[torch.randperm(len(order), generator=gen)].numpy()
        rng = np.random.default_rng([config.seed, epoch])  # streamed pools' shuffle
        total, count, correct = 0.0, 0, 0
        for rows, x, masks in self.cells.batches(order, config.batch_size, rng=rng):
            if len(rows) < 2:
                continue
            idx = torch.from_numpy(rows)
            loss, right = self.loss(idx, x, masks)
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            self.scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            correct += right
        entry = {"epoch": epoch, "loss": total / max(count, 1), "seconds": round(time.monotonic() - t0, 2)}
        if config.method == "slc":
            entry["copy_accuracy"] = correct / max(count, 1)
        logger.info(
            "epoch %d/%d  %s loss %.4f%s  (%.1f s)",
            epoch,
            config.epochs,
            config.method,
            entry["loss"],
            f"  copies recognised {entry['copy_accuracy']:.3f}" if "copy_accuracy" in entry else "",
            entry["seconds"],
        )
        return entry


def start_training(net, cells, config) -> EmbedTraining:
    import torch

    from .losses import BarlowTwinsLoss

    n = len(cells)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    per_epoch = n * (config.copies if config.method == "slc" else 1)
    steps = config.epochs * math.ceil(per_epoch / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    return EmbedTraining(
        config,
        net,
        cells,
        config.augment or DEFAULT_AUGMENT[config.method],
        opt,
        sched,
        torch.Generator().manual_seed(config.seed),
        BarlowTwinsLoss(config.lambda_) if config.method == "barlow" else None,
    )
