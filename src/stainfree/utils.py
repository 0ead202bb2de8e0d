"""Shared plumbing: the error type, logging-based progress, and atomic output folders."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "items",
    log: logging.Logger | None = None,
    every_s: float = 5.0,
) -> Iterator[T]:
    """Yield from ``iterable`` and log progress about every ``every_s`` seconds and at the end.

    Progress goes through :mod:`logging` (not a terminal-only bar), so it shows in a shell, in CI
    logs and in notebooks alike; silence it with the log level.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    total : int, optional
        Number of items, shown as ``count/total``; taken from ``len(iterable)`` when it has one.
    desc : str, default ""
        What is being done, at the start of every message.
    unit : str, default "items"
        What is counted.
    log : logging.Logger, optional
        Where to log (default this module's logger), at level INFO.
    every_s : float, default 5.0
        Seconds between progress messages.

    Yields
    ------
    object
        The items of ``iterable``, unchanged.

    Examples
    --------
    >>> from stainfree.utils import progress
    >>> list(progress(range(3), desc="demo"))
    [0, 1, 2]
    """
    log = log or logger
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    start = last = time.monotonic()
    count = 0
    for count, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            log.info("%s: %d%s %s (%.0f/s)", desc, count, of, unit, count / max(now - start, 1e-9))
    elapsed = time.monotonic() - start
    log.info("%s: %d %s in %.1f s", desc, count, unit, elapsed)


def _is_replaceable(path: Path, marker: str | None) -> bool:
    if path.is_file() or path.is_symlink():
        return True
    if not path.is_dir():
        return True
    if not any(path.iterdir()):
        return True
    return marker is not None and (path / marker).exists()


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, *, force: bool = False, marker: str | None = None):
    """Build an output folder under a temporary name and move it into place only on success.

    Yields the temporary folder to write into. An interrupted or failed write leaves ``path``
    untouched (no half-written output can look complete). An existing ``path`` is refused unless
    ``force``; even with ``force`` only a file, an empty folder, or a folder holding ``marker``
    (a previous output of the same kind) is replaced, so ``-o .`` can never wipe a user's folder.

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
    if path.exists():
        if not force:
            raise StainfreeError(f"{path}: already exists; pass --force (force=True) to replace it")
        if not _is_replaceable(path, marker):
            raise StainfreeError(f"{path}: exists and is not a stainfree output ({marker} missing); not replacing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file through a temporary name in the same folder and rename it into place.

    A reader never sees a half-written file, and an existing file is replaced only once the new
    one is complete.

    Parameters
    ----------
    path : path
        The file to write (its folder must exist).
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
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
    """
    import pandas as pd

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
