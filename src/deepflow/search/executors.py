"""Executors: where the chunks of a search are evaluated.

An :class:`Executor` applies a function to every item of a list and yields the results as
they finish, in any order. The search reduces the results with an order-independent merge
(ties are broken by a stable key), so every executor gives the same answer bit for bit:

* :class:`SerialExecutor`: in the calling process, one chunk after the other. With the
  vectorized evaluator a whole search often takes a second or two, and this is the fastest
  choice for it (no process start-up, no pickling).
* :class:`ProcessExecutor`: a pool of local processes (``concurrent.futures``), for larger
  sweeps on one machine.
* :class:`DaskExecutor`: a Dask distributed cluster (``tcp://HOST:PORT``) or a local one,
  for sweeps that outgrow one machine. Dask is an optional dependency (the ``dask`` extra:
  ``pip install "deepflow[dask]"``), imported only when this executor is built.

The function and the items must be picklable for the last two: module-level functions and
plain data (the chunk tasks of :mod:`deepflow.search.exhaustive` are).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from deepflow.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over items and yields results as they complete.

    Contract: every item is processed at most once per call; results come back in any order;
    if the consumer stops iterating (an exception, a ``break``), work not yet started is
    cancelled; :meth:`close` releases workers and may be called more than once.
    """

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Evaluates in the calling process, in order."""

    name = "serial"

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A pool of ``workers`` local processes.

    Processes start with the ``spawn`` method: it does not copy the parent's threads or
    locks, so it is safe whatever the caller runs (a Dask client, a progress-bar thread).
    At most ``2 * workers`` chunks are in flight, so results stream back as they finish
    and an interrupted search loses little work.
    """

    name = "processes"

    def __init__(self, workers: int, start_method: str = "spawn") -> None:
        if workers < 1:
            raise ConfigError(f"must be at least 1 (got {workers})", "--workers")
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context(start_method)
        )

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        queue = list(items)[::-1]
        running: set[Future[R]] = set()
        try:
            while queue or running:
                while queue and len(running) < 2 * self.workers:
                    running.add(self._pool.submit(fn, queue.pop()))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Chunks as Dask tasks, on the scheduler at ``address`` (``tcp://HOST:PORT``) or, when
    ``address`` is None or ``"local"``, on a local cluster of ``workers`` single-threaded
    workers (processes, or threads with ``processes=False``)."""

    name = "dask"

    def __init__(
        self, address: str | None = None, workers: int = 1, processes: bool = True
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError(
                'Dask is not installed; install the extra: pip install "deepflow[dask]" '
                '(or "dask[distributed]")',
                "--scheduler",
            ) from None
        self._cluster: Any = None
        if address in (None, "local"):
            self._cluster = LocalCluster(
                n_workers=max(1, workers),
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
            self._client: Any = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler: {exc}", "--scheduler"
                ) from None

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
        from distributed import as_completed

        futures = self._client.map(fn, list(items), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def make_executor(workers: int = 1, scheduler: str | None = None) -> Executor:
    """The executor for the command-line options: ``scheduler`` (an address or ``local``)
    picks Dask; otherwise ``workers`` > 1 a process pool and 1 the calling process."""
    if scheduler is not None:
        return DaskExecutor(scheduler, workers=workers)
    if workers < 1:
        raise ConfigError(f"must be at least 1 (got {workers})", "--workers")
    return SerialExecutor() if workers == 1 else ProcessExecutor(workers)
