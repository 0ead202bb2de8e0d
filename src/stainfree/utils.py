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
    """A problem with the user's input, reported as one line (the CLI prints it and exits 1)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty.

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
    """Write a file through a temporary name in the same folder and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def refuse_existing(path: str | os.PathLike | None, *, force: bool) -> None:
    """Stop, with one line, before anything is computed for an output that exists (unless
    ``force``); ``None`` (no output asked for) passes.

    >>> refuse_existing(None, force=False)
    """
    if path is not None and Path(path).exists() and not force:
        raise StainfreeError(f"{path}: already exists; pass --force to replace it")


def write_parquet(table, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write a DataFrame to ``path`` atomically; an existing file needs ``force``."""
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
    """
    import pandas as pd

    return pd.read_parquet(path, use_threads=False, pre_buffer=False)


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for a package whose public names live in submodules that
    are imported only when a name is first used (so ``import stainfree`` stays light).

    ``exports`` maps each public name to the submodule (relative to ``package``) that defines it.
    """
    import importlib

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
