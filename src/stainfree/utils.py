"""Shared plumbing: the error type, atomic output folders and files, private random streams."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)


class StainfreeError(ValueError):
    """A problem with the user's input, reported as one line (the CLI prints it and exits 1).

    A subclass of :class:`ValueError`, so code that catches ``ValueError`` catches it too.

    Examples
    --------
    >>> from stainfree.utils import StainfreeError
    >>> isinstance(StainfreeError("cells.cells: no such CellSet"), ValueError)
    True
    """


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    str
        Short enough for a one-line error report.

    Examples
    --------
    >>> from stainfree.utils import first_line
    >>> first_line(ValueError("bad\\nmore")), first_line(KeyError())
    ('bad', 'KeyError')
    """
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def _is_replaceable(path: Path, marker: str | None) -> bool:
    if path.is_file() or path.is_symlink():
        return True
    if not path.is_dir():
        return True
    if not any(path.iterdir()):
        return True
    return marker is not None and (path / marker).exists()


def _refuse_newcomer(path: Path, existed: bool) -> None:
    """Refuse to replace an output that appeared while this run worked (another run writing the same one)."""
    if not existed and (path.exists() or path.is_symlink()):
        raise StainfreeError(f"{path}: appeared while this run was working (another run writing the same output?); left as it is")


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, *, force: bool = False, marker: str | None = None):
    """Build an output folder under a temporary name and move it into place only on success.

    Yields the temporary folder to write into. An interrupted or failed write leaves ``path``
    untouched (no half-written output can look complete). An existing ``path`` is refused unless
    ``force``; even with ``force`` only a file, an empty folder, or a folder holding ``marker``
    (a previous output of the same kind) is replaced, so ``-o .`` can never wipe a user's folder.
    A ``path`` that appears while the block runs (a second run writing the same output) is left
    as it is, and this run's folder is discarded with a :class:`StainfreeError`.

    Parameters
    ----------
    path : path
        The output folder.
    force : bool, default False
        Replace an existing ``path`` (see above for what may be replaced).
    marker : str, optional
        A file name that marks a folder as a previous output of this kind.

    Yields
    ------
    pathlib.Path
        The temporary folder, a sibling of ``path``.

    Raises
    ------
    StainfreeError
        When ``path`` exists and ``force`` is not given, or it may not be replaced.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.utils import atomic_output_dir
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with atomic_output_dir(Path(tmp) / "run") as folder:
    ...         _ = (folder / "metrics.json").write_text("{}")
    ...     print(sorted(p.name for p in Path(tmp, "run").iterdir()))
    ['metrics.json']
    """
    path = Path(path)
    existed = path.exists()
    if existed:
        if not force:
            raise StainfreeError(f"{path}: already exists; pass --force (force=True) to replace it")
        if not _is_replaceable(path, marker):
            raise StainfreeError(f"{path}: exists and is not a stainfree output ({marker} missing); not replacing it")
    else:
        _warn_of_moved_aside(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(path)
    tmp.mkdir()
    try:
        yield tmp
        _refuse_newcomer(path, existed)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f"{_aside_prefix(path)}{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def _aside_prefix(path: Path) -> str:
    """The start of the hidden name a replaced output is moved aside to: ``.<name>.old-``."""
    return f".{path.name}.old-"


def _warn_of_moved_aside(path: Path) -> None:
    """A run killed between moving the old output aside and moving the new one in leaves ``path``
    absent and the old output under ``.<name>.old-*``: say where it is before writing anew."""
    if path.parent.is_dir():
        for old in sorted(path.parent.glob(glob.escape(_aside_prefix(path)) + "*")):
            logger.warning(
                "%s: absent, but %s holds the output an interrupted --force run had moved aside; rename it back to keep it", path, old
            )


def _partial_name(path: Path, suffix: str = "") -> Path:
    """The hidden temporary sibling an output is built under: ``.<name>.partial-<8 hex digits><suffix>``."""
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}{suffix}")


_PARTIAL = re.compile(r"^\.(.+)\.partial-[0-9a-f]{8}(\.[^.]+)?$")  # group 1: the final name


def refuse_partial(path: str | os.PathLike) -> None:
    """Refuse to read a hidden ``.<name>.partial-*`` file or folder as an output.

    Outputs are built under such names and renamed when complete (:func:`atomic_output_dir`,
    :func:`atomic_output_file`); one still carrying the name was left by a run that was killed
    before it finished, even when every file inside looks whole.

    Parameters
    ----------
    path : path
        What is about to be read.

    Raises
    ------
    StainfreeError
        When ``path`` is named as an unfinished output.

    Examples
    --------
    >>> from stainfree.utils import refuse_partial
    >>> refuse_partial("runs/hek")
    >>> refuse_partial("runs/.hek.partial-1a2b3c4d")
    Traceback (most recent call last):
    stainfree.utils.StainfreeError: runs/.hek.partial-1a2b3c4d: an unfinished output left by an interrupted run; delete it and run again
    """
    if _PARTIAL.match(Path(path).name):
        raise StainfreeError(f"{path}: an unfinished output left by an interrupted run; delete it and run again")


@contextlib.contextmanager
def atomic_output_file(path: str | os.PathLike):
    """Write a file under a temporary name in the same folder and rename it into place only on success.

    Yields the temporary path (a hidden sibling of ``path`` with the same suffix) for any writer
    that takes a file name. An interrupted or failed write leaves ``path`` untouched; an existing
    ``path`` is replaced only once the new file is complete (refuse it beforehand with
    :func:`refuse_existing`); one that appears while the block runs is left as it is
    (:class:`StainfreeError`). Several files that belong together are moved in one after the other
    when their blocks end, e.g. through :class:`contextlib.ExitStack`.

    Parameters
    ----------
    path : path
        The file to write; missing folders above it are made.

    Yields
    ------
    pathlib.Path
        The temporary file to write.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.utils import atomic_output_file
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with atomic_output_file(Path(tmp) / "a.txt") as partial:
    ...         _ = partial.write_text("hello")
    ...         print(partial.name.startswith(".a.txt.partial-"), Path(tmp, "a.txt").exists())
    ...     print(Path(tmp, "a.txt").read_text(), len(list(Path(tmp).iterdir())))
    True False
    hello 1
    """
    path = Path(path)
    tmp = _partial_name(path, path.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    try:
        yield tmp
        _refuse_newcomer(path, existed)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def final_path(path: str | os.PathLike) -> Path:
    """The path an output being built by :func:`atomic_output_dir` or :func:`atomic_output_file`
    will have once it is complete (other paths unchanged), so that what is written names its real place.

    Parameters
    ----------
    path : path
        A folder, possibly the temporary ``.NAME.partial-XXXXXXXX`` one.

    Returns
    -------
    pathlib.Path
        ``PARENT/NAME`` for a temporary folder, else ``path``.

    Examples
    --------
    >>> from stainfree.utils import final_path
    >>> final_path("runs/.demo.partial-1a2b3c4d").as_posix(), final_path("runs/demo").as_posix()
    ('runs/demo', 'runs/demo')
    """
    path = Path(path)
    match = _PARTIAL.match(path.name)
    return path.with_name(match.group(1)) if match else path


@contextlib.contextmanager
def private_torch_rng(seed: int | None = None):
    """Run torch code on a copy of torch's global random stream, seeded when ``seed`` is given, so
    the caller's stream is as it was afterwards (initial weights, dropout, built-in augmentation).

    Parameters
    ----------
    seed : int, optional
        Seed of the copy; without it, the copy continues the caller's stream. With a seed the
        current CUDA device's stream is copied too, since ``torch.manual_seed`` seeds it.

    Examples
    --------
    >>> import torch
    >>> from stainfree.utils import private_torch_rng
    >>> _ = torch.manual_seed(1); expected = torch.rand(2); _ = torch.manual_seed(1)
    >>> with private_torch_rng(seed=7):
    ...     _ = torch.rand(5)
    >>> torch.equal(torch.rand(2), expected)
    True
    """
    import torch

    devices = [torch.cuda.current_device()] if seed is not None and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file through a temporary name in the same folder and rename it into place.

    A reader never sees a half-written file, and an existing file is replaced only once the new
    one is complete (:func:`atomic_output_file`).

    Parameters
    ----------
    path : path
        The file to write; missing folders above it are made.
    data : bytes
        The whole content.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stainfree.utils import atomic_write_bytes
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     atomic_write_bytes(Path(tmp) / "a.txt", b"hello")
    ...     print(Path(tmp, "a.txt").read_text(), len(list(Path(tmp).iterdir())))
    hello 1
    """
    with atomic_output_file(path) as tmp:
        tmp.write_bytes(data)


def refuse_existing(path: str | os.PathLike | None, *, force: bool) -> None:
    """Stop, with one line, before anything is computed for an output that exists (unless ``force``)
    or that cannot be made (a file stands where one of its folders should be).

    Parameters
    ----------
    path : path or None
        The output; ``None`` (no output asked for) passes.
    force : bool
        Allow an existing ``path`` (it will be replaced later).

    Raises
    ------
    StainfreeError
        When ``path`` exists and ``force`` is false, or a folder above it is a file.

    Examples
    --------
    >>> import tempfile
    >>> from stainfree.utils import refuse_existing
    >>> refuse_existing(None, force=False)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     refuse_existing(tmp, force=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    stainfree.utils.StainfreeError: ...: already exists; pass --force to replace it
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     refuse_existing(f"{f.name}/run", force=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    stainfree.utils.StainfreeError: .../run: cannot be written, ... is a file, not a folder
    """
    if path is None:
        return
    if Path(path).exists() and not force:
        raise StainfreeError(f"{path}: already exists; pass --force to replace it")
    above = next((p for p in Path(path).absolute().parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise StainfreeError(f"{path}: cannot be written, {above} is a file, not a folder")


def write_parquet(table, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write a DataFrame to a parquet file atomically, without its index.

    Parameters
    ----------
    table : pandas.DataFrame
        The table.
    path : path
        The ``.parquet`` file.
    force : bool, default False
        Replace an existing file; without it, one raises :class:`StainfreeError`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from stainfree.utils import read_parquet, write_parquet
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_parquet(pd.DataFrame({"area": [10, 12]}), f"{tmp}/t.parquet")
    ...     print(read_parquet(path)["area"].tolist())
    [10, 12]
    """
    import io

    path = Path(path)
    refuse_existing(path, force=force)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_parquet(path: str | os.PathLike):
    """Read a parquet table into a DataFrame on the calling thread.

    pandas hands pyarrow an open Python file, and pyarrow's reader threads can then
    abort the interpreter at exit ("terminate called without an active exception",
    apache/arrow#34314 and #50482). Reading on the calling thread, without pre-buffering
    on pyarrow's I/O pool, avoids that; the tables stainfree reads are small enough that
    threads gain nothing.

    Parameters
    ----------
    path : path
        A parquet file.

    Returns
    -------
    pandas.DataFrame
        The table (see :func:`write_parquet` for an example).

    Raises
    ------
    StainfreeError
        For an unfinished ``.partial-*`` file (:func:`refuse_partial`).
    """
    import pandas as pd

    refuse_partial(path)
    return pd.read_parquet(path, use_threads=False, pre_buffer=False)


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for a package whose public names live in submodules that
    are imported only when a name is first used (so ``import stainfree`` stays light).

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict of str to str
        Each public name and the submodule (relative to ``package``, e.g. ``".core.store"``)
        that defines it.

    Returns
    -------
    tuple of two functions
        The package's ``__getattr__`` and ``__dir__``; assign them at module level.

    Examples
    --------
    >>> from stainfree.utils import lazy_exports
    >>> getattr_, dir_ = lazy_exports("stainfree", {"make_cells": ".datasets.synthetic"})
    >>> getattr_("make_cells").__name__, dir_()
    ('make_cells', ['make_cells'])
    """
    import importlib

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
