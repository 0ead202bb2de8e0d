"""A trained classifier: network, normalisation and classes, saved to one file; prediction on cells."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from ..progress import progress
from ..utils import StainfreeError, atomic_write_bytes, first_line, private_torch_rng, refuse_partial
from .models import create_model, inference_copy
from .transforms import apply_normalisation, dihedral_views

logger = logging.getLogger(__name__)


def resize_batch(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize (antialiased) of a batch of images; a no-op when already that size.

    Parameters
    ----------
    images : numpy.ndarray
        ``N x C x H x W`` images (made float32 for the resize).
    size : int or (int, int)
        The new ``H x W``; an int for a square.

    Returns
    -------
    numpy.ndarray
        ``N x C x size x size`` float32, or ``images`` itself when already that size.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.classifier import resize_batch
    >>> x = np.ones((2, 1, 8, 8))
    >>> resize_batch(x, 4).shape, resize_batch(x, (8, 2)).dtype, resize_batch(x, 8) is x
    ((2, 1, 4, 4), dtype('float32'), True)
    """
    import torch
    import torch.nn.functional as F

    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[2:]) == size:
        return images
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True).numpy()


@dataclasses.dataclass
class Classifier:
    """A trained network with everything needed to apply it to new cells.

    Usually made by :func:`stainfree.ml.train.fit` and stored with :meth:`save`; the cells are
    normalised and resized the way the training cells were before the network sees them.

    Attributes
    ----------
    model : torch.nn.Module
        The network (an architecture of :mod:`stainfree.ml.models`).
    arch, arch_kwargs : str, dict
        Its registry name, and the options it was built with.
    classes, channels : list of str
        Class names (in output order) and the image channels it takes, by name.
    input_size : (int, int)
        ``H x W`` the network sees; cells are resized to it.
    normalisation : dict
        Fitted parameters of :func:`stainfree.ml.transforms.apply_normalisation`.
    train_prior : list of float, optional
        Class distribution the network was trained under (for ``prior="balanced"``).
    cell_size : (int, int), optional
        Crop size of the training cells, before resizing.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from stainfree.ml.classifier import Classifier
    >>> from stainfree.ml.models import create_model
    >>> clf = Classifier(create_model("cnn3", 1, 2, 16), "cnn3", {}, ["round", "spindle"], ["bf"], (16, 16), {"method": "cell"})
    >>> images = np.random.default_rng(0).integers(0, 255, (5, 1, 24, 24)).astype(np.uint8)
    >>> clf.predict_proba(images).shape, clf.predict(images).shape, clf.embed(images).shape
    ((5, 2), (5,), (5, 32))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     again = Classifier.load(clf.save(f"{tmp}/model.safetensors"))
    >>> again.classes, again.input_size
    (['round', 'spindle'], (16, 16))
    """

    model: object
    arch: str
    arch_kwargs: dict
    classes: list[str]
    channels: list[str]
    input_size: tuple[int, int]
    normalisation: dict
    train_prior: list[float] | None = None
    cell_size: tuple[int, int] | None = None  # crop size of the training cells, before resizing

    @property
    def metadata(self) -> dict:
        """The description stored beside the weights in the model file (JSON-able)."""
        return {
            "format": "stainfree.classifier",
            "version": 1,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "classes": self.classes,
            "channels": self.channels,
            "input_size": list(self.input_size),
            "normalisation": self.normalisation,
            "train_prior": self.train_prior,
            "cell_size": None if self.cell_size is None else list(self.cell_size),
        }

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Normalise images in this model's channels and resize them to its input size.

        Parameters
        ----------
        images : numpy.ndarray
            ``N x C x H x W``, ``C`` the model's channels in its order.

        Returns
        -------
        numpy.ndarray
            Float32 ``N x C x input_size``, ready for the network.

        Raises
        ------
        StainfreeError
            If the images are not 4-D or have another number of channels.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1] != len(self.channels):
            raise StainfreeError(
                f"model expects {len(self.channels)} channels ({', '.join(self.channels)}), got images of shape {images.shape}"
            )
        x = apply_normalisation(images, self.normalisation)
        return resize_batch(x, self.input_size)

    def predict_proba(
        self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto", tta: bool = False, prior: str = "balanced"
    ) -> np.ndarray:
        """Class probabilities of each cell.

        ``prior="balanced"`` (the default) gives the probabilities under equal class priors: the
        network's output divided by the class distribution it was trained under (logit
        adjustment), which is the decision that maximises balanced accuracy; ``prior="train"``
        keeps the training distribution.

        Parameters
        ----------
        images : numpy.ndarray
            Cells, ``N x C x H x W`` in the model's channels, not normalised.
        batch_size : int, default 256
            Cells per forward pass.
        device : str, default "auto"
            Torch device; ``auto`` takes a GPU when there is one (see :func:`pick_device`).
        tta : bool, default False
            Average over the 8 rotations/flips of each cell.
        prior : {"balanced", "train"}, default "balanced"
            The class prior the probabilities are for.

        Returns
        -------
        numpy.ndarray
            ``N x len(classes)`` float32, rows summing to 1.

        Raises
        ------
        StainfreeError
            For another ``prior``, or images that :meth:`prepare` refuses.
        """
        import torch

        if prior not in ("balanced", "train"):
            raise StainfreeError(f"prior must be balanced or train, got {prior!r}")
        dev = pick_device(device)
        model = inference_copy(self.model).to(dev)
        out = []
        with torch.inference_mode():
            for start in progress(range(0, len(images), batch_size), desc="predicting", unit="batches", log=logger, summary=False):
                x = torch.from_numpy(self.prepare(images[start : start + batch_size])).to(dev, memory_format=torch.channels_last)
                views = dihedral_views(x) if tta else [x]
                p = sum(torch.softmax(model(v), dim=1) for v in views) / len(views)
                out.append(p.cpu().numpy())
        proba = np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
        if prior == "balanced" and self.train_prior is not None:
            proba = proba / np.asarray(self.train_prior, np.float32)[None]
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def embed(self, images: np.ndarray, *, batch_size: int = 256, device: str = "auto") -> np.ndarray:
        """The penultimate-layer features (``model.features``) of each cell.

        Parameters
        ----------
        images : numpy.ndarray
            Cells, ``N x C x H x W`` in the model's channels, not normalised.
        batch_size, device : int, str, default 256, "auto"
            As for :meth:`predict_proba`.

        Returns
        -------
        numpy.ndarray
            ``N x D`` float32, ``D`` the network's feature width.
        """
        import torch

        dev = pick_device(device)
        model = self.model.to(dev).eval()
        with torch.no_grad():
            parts = [
                model.features(torch.from_numpy(self.prepare(images[s : s + batch_size])).to(dev)).cpu().numpy()
                for s in range(0, len(images), batch_size)
            ]
        return np.concatenate(parts)

    def predict(self, images: np.ndarray, **kwargs) -> np.ndarray:
        """Predicted class names.

        Parameters
        ----------
        images : numpy.ndarray
            Cells, ``N x C x H x W`` in the model's channels, not normalised.
        **kwargs
            Options of :meth:`predict_proba` (``tta``, ``prior``, ...).

        Returns
        -------
        numpy.ndarray
            The most probable class of each cell (object dtype).
        """
        return np.asarray(self.classes, dtype=object)[self.predict_proba(images, **kwargs).argmax(1)]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` weights with the description as JSON metadata (atomically).

        Parameters
        ----------
        path : str or os.PathLike
            The model file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path
        """
        return write_model_file(path, self.model.state_dict(), self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Classifier:
        """Read a classifier written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            A model file.

        Returns
        -------
        Classifier
            In eval mode, on the CPU.

        Raises
        ------
        StainfreeError
            If the file is missing, not a stainfree model, or an embedder.
        """
        meta, state = read_model_file(path)
        if meta.get("format") == "stainfree.embedder":
            raise StainfreeError(f"{path}: an embedder, not a classifier (use it as embedder:{path})")
        with private_torch_rng():  # initial weights, replaced below
            model = create_model(meta["arch"], len(meta["channels"]), len(meta["classes"]), meta["input_size"][0], **meta["arch_kwargs"])
        model.load_state_dict(state)
        model.eval()
        return cls(
            model,
            meta["arch"],
            meta["arch_kwargs"],
            meta["classes"],
            meta["channels"],
            tuple(meta["input_size"]),
            meta["normalisation"],
            meta.get("train_prior"),
            tuple(meta["cell_size"]) if meta.get("cell_size") else None,
        )


def write_model_file(path: str | os.PathLike, state: dict, metadata: dict) -> Path:
    """Tensors as ``.safetensors`` with ``metadata`` as JSON under the key ``stainfree``, atomically.

    The format of classifiers and embedders; read it back with :func:`read_model_file`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists).
    state : dict of str to torch.Tensor
        The tensors (a ``state_dict``); they are copied to the CPU.
    metadata : dict
        A JSON-able description.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from stainfree.ml.classifier import read_model_file, write_model_file
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_model_file(f"{tmp}/m.safetensors", {"w": torch.ones(2)}, {"format": "demo"})
    ...     meta, state = read_model_file(path)
    >>> meta, state["w"].tolist()
    ({'format': 'demo'}, [1.0, 1.0])
    """
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write_bytes(path, save(state, metadata={"stainfree": json.dumps(metadata)}))
    return Path(path)


def read_model_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """The metadata and tensors of a file written by :func:`write_model_file`.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    metadata, state : dict
        The JSON description, and the tensors by name.

    Raises
    ------
    StainfreeError
        If the file does not exist or is not a stainfree model file.

    Examples
    --------
    >>> from stainfree.ml.classifier import read_model_file
    >>> read_model_file("no-such-model.safetensors")
    Traceback (most recent call last):
    ...
    stainfree.utils.StainfreeError: no-such-model.safetensors: no such model file
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    refuse_partial(path)
    if not path.is_file():
        raise StainfreeError(f"{path}: no such model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["stainfree"])
        state = load_file(str(path))
    except Exception as exc:
        raise StainfreeError(f"{path}: not a stainfree model ({first_line(exc)})") from exc
    return meta, state


def pick_device(device: str = "auto"):
    """The torch device to run on.

    Parameters
    ----------
    device : str, default "auto"
        ``auto`` (CUDA when available, else the CPU) or a torch device name (``cpu``, ``cuda:0``).

    Returns
    -------
    torch.device

    Examples
    --------
    >>> from stainfree.ml.classifier import pick_device
    >>> pick_device("cpu")
    device(type='cpu')
    """
    import torch

    try:
        return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    except RuntimeError as exc:
        raise StainfreeError(f"device {device!r} is not auto, cpu, cuda or cuda:N") from exc


def check_finite(images: np.ndarray, cell_ids) -> None:
    """Refuse float images with NaN or infinite pixels, naming the first such cell.

    Parameters
    ----------
    images : numpy.ndarray
        ``N x ...`` images (integer images always pass).
    cell_ids : sequence
        The ``N`` cells' ids, for the message.

    Raises
    ------
    StainfreeError
        If any pixel is NaN or infinite.

    Examples
    --------
    >>> import numpy as np
    >>> from stainfree.ml.classifier import check_finite
    >>> check_finite(np.array([[0.0, 1.0], [np.nan, 2.0]]), np.array(["a", "b"], dtype=object))
    Traceback (most recent call last):
    ...
    stainfree.utils.StainfreeError: cell 'b' has NaN or infinite pixel values (1 cells do)
    """
    if images.dtype.kind == "f":
        bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
        if bad.any():
            first = np.asarray(cell_ids)[int(np.flatnonzero(bad)[0])]
            raise StainfreeError(f"cell {first!r} has NaN or infinite pixel values ({int(bad.sum())} cells do)")
