"""Scale-out on dask.distributed: chunks of draws run as futures on a cluster, results identical to a serial run.

Every draw's random numbers are keyed by ``(seed, draw, slot, year, stream)`` (see :mod:`leadsim.model.rng`), so the
worker, thread or chunk that computes a draw never changes its numbers. This module only moves work around:

* the draw-independent :class:`~leadsim.engine.RunInputs` (cost model, stop-loss price) are built **once**
  in the client and scattered to every worker;
* each chunk ``[start, stop)`` of ``simulation.chunk_draws`` draws becomes one task calling
  :func:`leadsim.engine.run_chunk`, a pure function of ``(cfg, model, draws)``;
* inside a task numba runs with ``threads`` threads (default 1: dask supplies the parallelism, one task per
  worker thread), set with :func:`numba.set_num_threads` in the task itself because that setting is
  per-thread;
* each finished chunk goes to the run's :class:`~leadsim.io.sink.Sink` in completion order, placed by its
  draw indices, exactly as in the serial loop.

dask is an optional dependency (``pip install 'leadsim[dask]'``); it is imported only when a cluster is used.

Examples
--------
>>> import leadsim
>>> from leadsim.distributed import cluster, simulate_distributed
>>> cfg = leadsim.load_config(overrides={"simulation.draws": 16, "aco.beneficiaries": 300})
>>> with cluster(workers=2) as client:                     # doctest: +SKIP
...     ds = simulate_distributed(cfg, client)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from leadsim.config import Config
from leadsim.engine import ChunkResult, RunInputs, drive, prepare, run_chunk
from leadsim.engine import threads as numba_threads
from leadsim.errors import DaskUnavailableError, LeadsimError
from leadsim.io.sink import MemorySink, Sink

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from distributed import Client

__all__ = ["DaskUnavailableError", "cluster", "require_dask", "run_draws_distributed", "simulate_distributed"]

INSTALL_HINT = "pip install 'leadsim[dask]'"


def require_dask() -> Any:
    """Import and return :mod:`distributed`, or raise :class:`DaskUnavailableError` with the install hint."""
    try:
        import distributed
    except ImportError as err:
        raise DaskUnavailableError(f"running on a dask cluster needs dask.distributed, which is not installed "
                                   f"({err}); install it with: {INSTALL_HINT}") from None
    return distributed


@contextlib.contextmanager
def cluster(workers: int | None = None, scheduler: str | None = None, *, threads: int = 1,
            worker_threads: int = 1, memory_limit: str | float | None = "auto") -> Iterator[Client]:
    """A dask client on a new local cluster (``workers``) or on an existing one (``scheduler``).

    Parameters
    ----------
    workers : int, optional
        Start a :class:`distributed.LocalCluster` of this many worker *processes*; closed on exit.
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``; only the client is closed on exit.
    threads : int
        ``NUMBA_NUM_THREADS`` of each local worker process (the numba pool size; default 1).
    worker_threads : int
        Dask threads per local worker (concurrent tasks per worker; default 1).
    memory_limit : str or float, optional
        Per-worker memory limit of a local cluster (dask's default ``"auto"``).

    Yields
    ------
    distributed.Client
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give exactly one of workers= (a local cluster) or scheduler= (an existing cluster)")
    distributed = require_dask()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler)  # timeout: dask config distributed.comm.timeouts.connect
        except OSError as err:
            raise OSError(f"cannot connect to the dask scheduler at {scheduler}: {err}") from None
        except (ValueError, TypeError) as err:
            raise LeadsimError(f"--scheduler {scheduler!r}: not a dask scheduler address ({err}); expected e.g. "
                               "tcp://10.0.0.5:8786") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 1:
        raise ValueError(f"workers must be >= 1 (got {workers})")
    env = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    import dask

    # no dashboard: LocalCluster(dashboard_address=None) still serves HTTP routes on port 8787, so the scheduler
    # gets dashboard=False, no HTTP routes, and a random port on the loopback interface only
    no_http = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    stack = contextlib.ExitStack()
    with dask.config.set({"distributed.scheduler.http.routes": []}):
        lc = stack.enter_context(distributed.LocalCluster(
            n_workers=workers, threads_per_worker=worker_threads, processes=True, host="127.0.0.1",
            dashboard_address=None, scheduler_kwargs=no_http, env=env, memory_limit=memory_limit,
            silence_logs=40))
        client = stack.enter_context(distributed.Client(lc))
    try:
        yield client
    except BaseException:
        _quiet_close(stack)
        raise
    _quiet_close(stack)


def _quiet_close(stack: contextlib.ExitStack) -> None:
    """Shut a local cluster down without log tracebacks (workers racing the scheduler's exit are harmless)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            stack.close()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _chunk_task(cfg: Config, inputs: RunInputs, lo: int, hi: int, nthreads: int) -> ChunkResult:
    """Run one chunk on a worker with ``nthreads`` numba threads (set here: the setting is per thread)."""
    with numba_threads(nthreads):
        return run_chunk(cfg, inputs, np.arange(lo, hi, dtype=np.int64))


def _worker_count(client: Client) -> int:
    info = client.scheduler_info()
    return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))


def run_draws_distributed(cfg: Config, client: Client, sink: Sink, chunks: Sequence[tuple[int, int]] | None = None,
                          *, threads: int | None = None, progress: bool | None = None,
                          max_in_flight: int | None = None) -> Sink:
    """Run chunks of draws as dask futures; the distributed twin of :func:`leadsim.engine.run_draws`.

    Parameters
    ----------
    cfg : Config
        A validated config.
    client : distributed.Client
        Client of the cluster to run on (see :func:`cluster`).
    sink : Sink
        Where finished chunks go, in completion order (placed by their draw indices, so the result is in draw
        order and identical bit for bit to a serial run).
    chunks : sequence of (start, stop), optional
        Defaults to all draws in chunks of ``simulation.chunk_draws``.
    threads : int, optional
        numba threads inside each task; default ``simulation.threads`` or 1.
    progress : bool, optional
        Show a tqdm bar (default: on a terminal, off under ``CI``).
    max_in_flight : int, optional
        Chunks submitted but not yet consumed; default twice the cluster's thread count (bounds memory).

    Returns
    -------
    Sink
        The same sink, closed.
    """
    distributed = require_dask()
    nthreads = int(threads if threads is not None else (cfg.simulation.threads or 1))
    with drive(cfg, sink, chunks, progress) as (todo, deliver):
        if not todo:
            return sink
        # built once, shipped once: every task refers to the same scattered objects
        cfg_f, inputs_f = client.scatter([cfg, prepare(cfg)], broadcast=True, hash=False)
        window = max_in_flight or 2 * _worker_count(client)
        pending = iter(todo)
        key_bounds: dict[str, tuple[int, int]] = {}

        def submit() -> Any:
            lo, hi = next(pending)
            fut = client.submit(_chunk_task, cfg_f, inputs_f, lo, hi, nthreads,
                                key=f"leadsim-chunk-{lo}-{hi}-{os.urandom(4).hex()}", pure=False)
            key_bounds[fut.key] = (lo, hi)
            return fut

        queue = distributed.as_completed([submit() for _ in range(min(window, len(todo)))], with_results=False)
        try:
            for fut in queue:
                res: ChunkResult = fut.result()
                lo, hi = key_bounds.pop(fut.key)
                fut.release()
                deliver(lo, hi, res)
                with contextlib.suppress(StopIteration):
                    queue.add(submit())
        finally:
            left = list(queue.futures) if hasattr(queue, "futures") else []
            if left:  # an error or an interrupt: stop the chunks still queued or running
                client.cancel(left)
    return sink


def simulate_distributed(cfg: Config, client: Client, *, threads: int | None = None,
                         progress: bool | None = None) -> xr.Dataset:
    """:func:`leadsim.simulate` on a dask cluster: the same dataset, bit for bit (except ``created``).

    Parameters
    ----------
    cfg : Config
        A validated config.
    client : distributed.Client
        Client of the cluster (see :func:`cluster`).
    threads : int, optional
        numba threads per task (default ``simulation.threads`` or 1).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
    """
    sink = MemorySink()
    run_draws_distributed(cfg, client, sink, threads=threads, progress=progress)
    if sink.dataset is None:
        raise RuntimeError("the run finished without a dataset")
    return sink.dataset
