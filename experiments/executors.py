"""Where a sweep's runs execute: a local process pool, or Ray tasks on a local or existing cluster.

Both call ``execute`` on a run's configuration and hand its result back to the driver, which writes the run
folder under ``--out``: on a multi-node Ray cluster the results travel back to the driver (a summary is a few
kB), so no shared filesystem is needed and the folders land on the driver's machine whichever node ran them.
A worker reports the simulator revision it ran; a result from other code is recorded as a failure.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from core.config import RunConfig


def execute(config: dict[str, Any]) -> dict[str, Any]:
    """Simulate one configuration; never raises: {"status": "done", "summary"} or {"status": "failed",
    "error": traceback}, with "wall_s", the worker's simulator "revision" and the digests of the "inputs" it
    read (profile, workload file), so that the driver can refuse a result computed from other files."""
    from core.summary import summarize
    from experiments.runid import code_revision, inputs
    from sim.run import simulate

    t0 = time.perf_counter()
    out: dict[str, Any] = {"revision": code_revision(), "inputs": {}}
    try:
        cfg = RunConfig(**config).validate()
        out["inputs"] = inputs(cfg)
        out |= {"status": "done", "summary": summarize(simulate(cfg))}
    except Exception:  # noqa: BLE001 -- a run that raises is recorded, and the sweep goes on
        out |= {"status": "failed", "error": traceback.format_exc()}
    out["wall_s"] = time.perf_counter() - t0
    return out


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask for SIGKILL when the driver dies (a killed sweep leaves no
    orphans still writing)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _lost(reason: str) -> dict[str, Any]:
    return {"status": "failed", "error": reason, "wall_s": 0.0, "revision": "", "inputs": {}}


def run_local(configs: Sequence[dict[str, Any]], jobs: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, result) for each configuration as it finishes, on ``jobs`` processes (in this process for 1).

    At most ``jobs`` runs are in flight; if a worker dies (killed, out of memory), the runs in flight are
    recorded as failed with that reason, a new pool is started, and the others go on."""
    if jobs <= 1:
        for i, cfg in enumerate(configs):
            yield i, execute(cfg)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    queue = list(enumerate(configs))[::-1]
    while queue:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_die_with_parent) as pool:
            pending: dict[Future[dict[str, Any]], int] = {}
            try:
                while queue or pending:
                    while queue and len(pending) < jobs:
                        i, cfg = queue.pop()
                        pending[pool.submit(execute, cfg)] = i
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        if isinstance(fut.exception(), BrokenProcessPool):
                            raise BrokenProcessPool  # every run in flight is lost with the pool
                        yield pending.pop(fut), fut.result()
            except BrokenProcessPool:
                for i in sorted(pending.values()):
                    yield i, _lost("a worker process died while this run was in flight (killed, or out of "
                                   "memory); run the sweep again with --retry-failed\n")
                pending.clear()
            finally:
                for fut in pending:
                    fut.cancel()


def run_ray(configs: Sequence[dict[str, Any]], address: str, jobs: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, result) for each configuration as it finishes, as Ray tasks of one CPU each on the cluster at
    ``address`` (a local one of ``jobs`` CPUs when empty). Every node must have this project installed at the
    same revision (results from other code come back as failures)."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install -e '.[cluster]'") from exc
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": jobs}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kwargs)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(execute)
        pending = {task.remote(cfg): i for i, cfg in enumerate(configs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    yield i, ray.get(ref)
                except Exception:  # noqa: BLE001 -- the task died (worker lost): recorded as failed
                    yield i, _lost(traceback.format_exc())
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
