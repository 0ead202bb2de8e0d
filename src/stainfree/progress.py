"""Progress of long work: a bar in a terminal, log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "items",
    log: logging.Logger | None = None,
    every_s: float = 5.0,
    bar: bool | None = None,
    summary: bool = True,
) -> Iterator[T]:
    """Yield from ``iterable`` and show progress: a bar in a terminal, log lines elsewhere.

    In a terminal (standard error is a TTY and ``log`` shows INFO) a tqdm bar shows the count,
    the rate and the time left, and log messages print above it. Elsewhere (CI logs, files,
    notebooks) progress goes through :mod:`logging` about every ``every_s`` seconds; silence it
    with the log level. Either way one line at the end says how many items took how long.

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
    bar : bool, optional
        Force the terminal bar on or off; default: on in a terminal only.
    summary : bool, default True
        Log the closing line (count and time); off for steps inside a larger job.

    Yields
    ------
    object
        The items of ``iterable``, unchanged.

    Examples
    --------
    >>> from stainfree.progress import progress
    >>> list(progress(range(3), desc="demo"))
    [0, 1, 2]
    """
    log = log or logger
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if bar is None:
        bar = log.isEnabledFor(logging.INFO) and sys.stderr.isatty()
    start = time.monotonic()
    count = 0
    if bar:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger("stainfree")]):
            with tqdm(iterable, total=total, desc=desc, unit=f" {unit}", file=sys.stderr, leave=False, dynamic_ncols=True) as shown:
                for item in shown:
                    yield item
                count = shown.n
    else:
        last = start
        for count, item in enumerate(iterable, 1):
            yield item
            now = time.monotonic()
            if now - last >= every_s:
                last = now
                of = f"/{total}" if total else ""
                log.info("%s: %d%s %s (%.0f/s)", desc, count, of, unit, count / max(now - start, 1e-9))
    if summary:
        log.info("%s: %d %s in %.1f s", desc, count, unit, time.monotonic() - start)
