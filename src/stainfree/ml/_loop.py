"""The epoch loop behind :func:`stainfree.ml.train.fit`: its state, one epoch of training, validation,
best-epoch keeping and checkpoints. Internal: use :func:`~stainfree.ml.train.fit`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .distributed import World, all_ranks, shared_order
from .transforms import augment, blackout_outside

if TYPE_CHECKING:
    from .train import TrainConfig

#: Streamed training recomputes batch-norm statistics on this many training cells.
BATCHNORM_CELLS = 16384


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


@dataclasses.dataclass
class TrainingRun:
    """The state of one training run, what a checkpoint saves and restores."""

    config: TrainConfig
    model: object
    optimiser: object
    scheduler: object
    loss_fn: object
    weights: object
    device: object
    cells: object  # TrainingCells: normalised, resized cells (and masks for blackout), in memory or streamed
    y: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_counts: np.ndarray
    rng: np.random.Generator
    generator: object
    history: list = dataclasses.field(default_factory=list)
    best: dict = dataclasses.field(default_factory=lambda: {"score": -np.inf, "state": None, "epoch": 0})
    epoch: int = 0
    ema: object = None  # torch.optim.swa_utils.AveragedModel of the weights, with config.ema
    world: World = dataclasses.field(default_factory=World)  # this process among those training (one by default)
    ddp: object = None  # the DistributedDataParallel wrapper of model, under a distributed launch

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train_idx) // self.config.batch_size)

    def sampling_probabilities(self) -> np.ndarray | None:
        counts = self.train_counts[self.y[self.train_idx]]
        p = {"balanced": 1.0 / counts, "sqrt": 1.0 / np.sqrt(counts)}.get(self.config.sampling)
        return None if p is None else p / p.sum()


def make_optimiser(model, config: TrainConfig, steps_per_epoch: int):
    import torch

    if config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)
    elif config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15)
        if config.schedule == "cosine"
        else None
    )
    return opt, scheduler


def resume(run: TrainingRun, checkpoint, signature: str, log) -> None:
    import torch

    saved = torch.load(checkpoint, weights_only=False)
    if saved.get("signature") != signature:
        log.info("ignoring %s: it was written with other settings", checkpoint)
        return
    run.model.load_state_dict(saved["model"])
    run.optimiser.load_state_dict(saved["optimizer"])
    if run.scheduler is not None and saved.get("scheduler"):
        run.scheduler.load_state_dict(saved["scheduler"])
    if run.ema is not None and saved.get("ema"):
        run.ema.load_state_dict(saved["ema"])
    run.history, run.best, run.epoch = saved["history"], saved["best"], saved["epoch"]
    run.rng.bit_generator.state = saved["rng"]
    run.generator.set_state(saved["gen"])
    log.info("resuming from %s at epoch %d", checkpoint, run.epoch + 1)


def save_checkpoint(run: TrainingRun, checkpoint, signature: str) -> None:
    import torch

    tmp = Path(checkpoint).with_suffix(".tmp")
    state = {
        "signature": signature,
        "model": run.model.state_dict(),
        "optimizer": run.optimiser.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "history": run.history,
        "best": run.best,
        "epoch": run.epoch,
        "rng": run.rng.bit_generator.state,
        "gen": run.generator.get_state(),
    }
    torch.save(state, tmp)
    os.replace(tmp, checkpoint)


def train_epoch(run: TrainingRun) -> dict:
    import torch

    config, gen = run.config, run.generator
    run.model.train()
    world = run.world
    p = run.sampling_probabilities()
    order = run.rng.choice(run.train_idx, size=len(run.train_idx), p=p) if p is not None else run.rng.permutation(run.train_idx)
    order = shared_order(order, world, run.device)
    net = run.ddp or run.model
    cuda = run.device.type == "cuda"
    total, seen, correct = 0.0, 0, 0
    for step, (b, xb, mb) in enumerate(run.cells.batches(order, config.batch_size // world.size, rng=run.rng)):
        if step >= run.steps_per_epoch:  # the schedule's length; in memory, the short last batch is left out
            break
        if not all_ranks(len(b) >= 2, world, run.device):  # batch norm needs two samples
            continue
        if mb is not None:
            blacked = blackout_outside(xb, mb, mode=config.blackout, generator=gen)
            xb = torch.where(torch.rand(len(b), 1, 1, 1, generator=gen) < 0.5, blacked, xb)
        xb = augment(xb, config.augment, generator=gen)
        xb = (xb.pin_memory() if cuda else xb).to(run.device, memory_format=torch.channels_last, non_blocking=cuda)
        yb = torch.from_numpy(run.y[b]).to(run.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):  # mixed precision on GPUs
            logits = net(xb)
        loss = run.loss_fn(logits.float(), yb)
        run.optimiser.zero_grad()
        loss.backward()
        run.optimiser.step()
        if run.scheduler is not None:
            run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        total += loss.item() * len(b)
        seen += len(b)
        correct += int((logits.argmax(1) == yb).sum())
    return {"train_loss": total / max(seen, 1), "train_accuracy": correct / max(seen, 1)}


def validate(run: TrainingRun) -> dict:
    import torch

    recalibrate_batchnorm(run.model, batchnorm_cells(run), device=run.device)
    run.model.eval()
    rows, parts = [], []
    with torch.no_grad():
        for b, xb, _ in run.cells.batches(run.val_idx, 512, shuffle=False):
            rows.append(b)
            parts.append(run.model(xb.to(run.device)).cpu())
    logits = torch.cat(parts)
    pred = logits.argmax(1).numpy()
    y_val = run.y[np.concatenate(rows)]
    return {
        "val_loss": float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y_val), weight=run.weights.cpu())),
        "val_accuracy": float(np.mean(pred == y_val)),
        "val_balanced_accuracy": balanced_accuracy(y_val, pred),
    }


def recalibrate_batchnorm(model, x, *, batch_size: int = 256, device=None) -> None:
    """Recompute batch-norm running statistics as exact averages over ``x`` (no gradients).

    The running averages kept during training lag behind weights that are still changing fast
    (small data, few steps per epoch), which makes a model in eval mode predict one class for
    whole epochs; recomputing them once per epoch removes that lag.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it is left in the mode (train or eval) it was in.
    x : torch.Tensor or iterable of torch.Tensor
        Normalised cells ``N x C x H x W``, usually the training cells, or batches of them
        (each used as it comes).
    batch_size : int, default 256
        Cells per forward pass (a last batch of one cell is skipped).
    device : torch.device, optional
        Where the model is; the batches are moved there.

    Examples
    --------
    >>> import torch
    >>> from stainfree.ml.models import create_model
    >>> from stainfree.ml.train import recalibrate_batchnorm
    >>> model = create_model("cnn3", 1, 2, 16).eval()
    >>> recalibrate_batchnorm(model, torch.ones(5, 1, 16, 16), batch_size=2)
    >>> int(model.body[1].num_batches_tracked), model.training
    (2, False)
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    chunks = (x[start : start + batch_size] for start in range(0, len(x), batch_size)) if torch.is_tensor(x) else x
    with torch.no_grad():
        for chunk in chunks:
            if len(chunk) > 1:
                model(chunk.to(device) if device is not None else chunk)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


def batchnorm_cells(run: TrainingRun):
    """What batch-norm statistics are recomputed on: every training cell in memory (one tensor);
    streamed, batches of a fixed random sample of :data:`BATCHNORM_CELLS` training cells."""
    if run.cells.in_memory:
        return run.cells.take(run.train_idx)[0]
    rows = run.train_idx
    if len(rows) > BATCHNORM_CELLS:
        rows = np.random.default_rng(run.config.seed).choice(rows, BATCHNORM_CELLS, replace=False)
    return (xb for _, xb, _ in run.cells.batches(rows, 256, shuffle=False))


def log_epoch(log, record: dict, epochs: int) -> None:
    val = (
        f"  val loss {record['val_loss']:.3f}  acc {record['val_accuracy']:.3f}  bal {record['val_balanced_accuracy']:.3f}"
        if "val_loss" in record
        else ""
    )
    log.info(
        "epoch %d/%d  train loss %.3f  acc %.3f%s  (%.1f s)",
        record["epoch"],
        epochs,
        record["train_loss"],
        record["train_accuracy"],
        val,
        record["seconds"],
    )


def keep_if_best(run: TrainingRun, record: dict) -> None:
    if "val_loss" not in record:
        return  # no validation cells: the last epoch is kept
    score = -record["val_loss"] if run.config.monitor == "val_loss" else record["val_balanced_accuracy"] - 1e-3 * record["val_loss"]
    if score > run.best["score"]:
        state = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
        run.best = {"score": score, "state": state, "epoch": record["epoch"]}
