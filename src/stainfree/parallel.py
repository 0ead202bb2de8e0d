"""Independent tasks (one field, one block of cells) run in this process or on a Dask cluster.

Serial is the default. ``workers=N`` starts a local ``dask.distributed`` cluster of N
single-threaded worker processes for the call (or, for work that releases the GIL, such as
segmenting fields, N threads of this process); ``scheduler=ADDRESS`` sends the tasks to a running
cluster (one started by dask-jobqueue on SLURM, for example). Results come back in the order of
the inputs, so a parallel run returns exactly what the serial one does; a failed task is retried
once, then reported by what it was working on.
"""

from __future__ import annotations

import contextlib
import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor

from .progress import progress
from .utils import StainfreeError, first_line

logger = logging.getLogger(__name__)
#: Times a failed task is tried again before the run stops.
RETRIES = 1


@contextlib.contextmanager
def dask_client(*, workers: int = 0, scheduler: str | None = None, timeout: str = "10s", threads: bool = False) -> Iterator:
    """A ``distributed.Client`` for the block (``None`` when serial); a local cluster it started is
    closed at the end.

    A local cluster is ``workers`` single-threaded processes. With ``threads`` (and no
    ``scheduler``) the client is instead a :class:`concurrent.futures.ThreadPoolExecutor` of
    ``workers`` threads in this process, for work that spends its time in code that releases the
    GIL (numpy, scipy, scikit-image and torch segmenting a field: 1.9x on two threads here): it
    starts at once and nothing is copied, where importing and starting an in-process Dask cluster
    took 0.75 s, a tenth of segmenting 32 fields on two threads.

    Raises
    ------
    StainfreeError
        When both are given, ``workers`` is negative, distributed is not installed, or the
        scheduler cannot be reached within ``timeout``.

    Examples
    --------
    >>> from stainfree.parallel import dask_client
    >>> with dask_client(workers=0) as client:
    ...     print(client)
    None
    """
    if workers < 0:
        raise StainfreeError(f"--workers must be 0 (serial) or more, got {workers}")
    if scheduler and workers:
        raise StainfreeError("give --workers (a local cluster) or --scheduler (a running one), not both")
    if not scheduler and workers <= 1:
        yield None
        return
    if threads and not scheduler:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="stainfree") as pool:
            try:
                yield pool
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise StainfreeError('parallel runs need dask.distributed: pip install "dask[distributed]"') from exc
    with contextlib.ExitStack() as stack:
        if scheduler:
            try:
                client = stack.enter_context(Client(scheduler, timeout=timeout))
            except (OSError, TimeoutError) as exc:
                raise StainfreeError(f"cannot reach the Dask scheduler at {scheduler} ({first_line(exc)})") from exc
        else:
            import dask

            # distributed sets MALLOC_TRIM_THRESHOLD_ in its workers, which makes glibc map and unmap
            # every large array afresh: segmenting a 1024 x 1024 field took twice as long there
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": environ}))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    dashboard_address=":0",
                    worker_dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
            )
            client = stack.enter_context(Client(cluster))
        logger.info("running on %s", scheduler or f"a local cluster of {workers} workers")
        yield client


def map_tasks(
    func: Callable,
    items: Sequence,
    *,
    client=None,
    names: Sequence[str] | None = None,
    desc: str = "tasks",
    unit: str = "tasks",
    log: logging.Logger | None = None,
) -> list:
    """``[func(item) for item in items]``, on ``client``'s workers when there is one.

    Parameters
    ----------
    func : callable
        A function of one item; with a client it must be importable by the workers (a module's
        function, or :func:`functools.partial` of one).
    items : sequence
        What each task gets.
    client : distributed.Client or concurrent.futures.Executor, optional
        From :func:`dask_client`; ``None`` runs here, in order.
    names : sequence of str, optional
        What each item is (a field's name, a cell range), for progress and errors.
    desc, unit : str
        For the progress line (it counts finished tasks).
    log : logging.Logger, optional
        Where progress goes.

    Returns
    -------
    list
        The results, in the order of ``items``.

    Raises
    ------
    StainfreeError
        A task's own StainfreeError as it is; any other failure, after :data:`RETRIES` more
        tries, as one line naming the item.

    Examples
    --------
    >>> from stainfree.parallel import map_tasks
    >>> map_tasks(abs, [-2, 3, -1])
    [2, 3, 1]
    """
    names = list(names) if names is not None else [f"task {i}" for i in range(len(items))]
    if client is None:
        return [func(item) for item in progress(items, desc=desc, unit=unit, log=log)]
    if isinstance(client, Executor):  # threads of this process
        from concurrent.futures import as_completed

        futures = [client.submit(_tried, func, item) for item in items]

        def cancel():
            for f in futures:
                f.cancel()

        key = id
    else:
        from distributed import as_completed

        data = client.scatter(list(items), hash=False)  # sent to the workers once, not inside the task graph
        futures = client.map(func, data, retries=RETRIES, pure=False)

        def cancel():
            client.cancel(futures + data)

        key = operator.attrgetter("key")
    position = {key(f): i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    try:
        for future in progress(as_completed(futures), total=len(futures), desc=desc, unit=unit, log=log):
            i = position[key(future)]
            try:
                results[i] = future.result()
            except StainfreeError:
                raise
            except Exception as exc:
                raise StainfreeError(
                    f"{names[i]}: failed on a worker after {RETRIES + 1} tries ({type(exc).__name__}: {first_line(exc)})"
                ) from exc
    finally:
        cancel()
    return results


def _tried(func: Callable, item):
    """``func(item)``, tried again up to :data:`RETRIES` times (what distributed's ``retries`` does for a cluster)."""
    for attempt in range(RETRIES + 1):
        try:
            return func(item)
        except StainfreeError:
            raise
        except Exception:
            if attempt == RETRIES:
                raise


def map_cell_blocks(
    func: Callable,
    n_cells: int,
    block_size: int,
    *,
    workers: int = 0,
    scheduler: str | None = None,
    desc: str = "cells",
    log: logging.Logger | None = None,
) -> list:
    """``func((start, stop))`` for consecutive blocks of ``block_size`` cells, here or on a Dask cluster.

    Each task reads its own rows from the store (``func`` holds the lazy CellSet), so only the
    results travel; the blocks are the serial run's batches, so the results are the serial ones.

    Parameters
    ----------
    func : callable
        A function of one ``(start, stop)`` pair, importable by the workers (a module's function or
        :func:`functools.partial` of one).
    n_cells, block_size : int
        How many cells, and how many a task takes.
    workers, scheduler : int, str, optional
        As :func:`dask_client`.
    desc : str
        For the progress line (it counts blocks).
    log : logging.Logger, optional
        Where progress goes.

    Returns
    -------
    list
        ``func``'s results, block by block, in order.

    Examples
    --------
    >>> from stainfree.parallel import map_cell_blocks
    >>> map_cell_blocks(tuple, 5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    blocks = [(start, min(start + block_size, n_cells)) for start in range(0, n_cells, block_size)]
    with dask_client(workers=workers, scheduler=scheduler) as client:
        return map_tasks(func, blocks, client=client, names=[f"cells {a}-{b - 1}" for a, b in blocks], desc=desc, unit="batches", log=log)
