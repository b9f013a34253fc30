"""The shared default WorkerPool, and pool lifetime: interpreter exit and fork."""

from __future__ import annotations

import atexit
import os
import threading
import time

from . import _core

__all__ = ["WorkerPool", "default_pool", "check_pool"]


class WorkerPool(_core.WorkerPool):
    """A pool of worker threads, each running its own asyncio event loop.

    ``WorkerPool(num_threads=None, *, loop_factory=None, linger=True)`` starts ``num_threads``
    workers up front (none if None); the pool grows on demand to the largest ``num_threads`` a
    group or gather asks of it, and every group and gather given ``pool=`` reuses its threads.
    Without ``pool=``, thrasks uses a shared default pool. Use it as a context manager, or call
    :meth:`shutdown`, to stop its threads: running tasks are cancelled and their loops closed.
    Pools still running at interpreter exit are shut down automatically.

    ``loop_factory`` makes each worker's event loop (default :func:`asyncio.new_event_loop`): a
    loop with debug on, a custom policy's loop, ``uvloop.new_event_loop`` where it is installed.
    It is called on the thread that grows the pool and must return a new, unused
    :class:`asyncio.AbstractEventLoop`; anything else raises :class:`TypeError` or
    :class:`ValueError` there. A worker whose loop dies (something escapes its ``run_forever``)
    fails the tasks it held with a :class:`RuntimeError` and is replaced on next use.

    ``linger``: a worker that has just finished its work and has nothing else to do watches for
    the next job for a short while (250 us, learning up to 1 ms) before it sleeps, so that a
    caller sending one small job after another finds it awake. That watching costs CPU while jobs
    keep coming less than 1 ms apart; ``linger=False`` makes idle workers sleep at once (every
    job then pays a thread wake-up). The default pool takes it from the environment variable
    ``THRASKS_LINGER`` (``0`` turns it off).
    """

    __slots__ = ()

    def stats(self) -> list[_core.WorkerStats]:
        """Per-worker counters, cheap enough to leave on: one dict per worker, in pool order.

        ``started``, ``finished`` (with a result), ``failed`` (with an exception) and
        ``cancelled`` count the tasks the worker ran since it started; ``running`` is how many it
        runs now; ``inbox`` the tasks posted to it and not yet taken; ``shared_queue`` the tasks
        waiting in the QUEUE-mode queues it serves; ``busy_seconds`` the CPU time of its thread
        and ``idle_seconds`` the rest of the time since it started (a task blocked in a
        synchronous call counts as idle CPU, but keeps ``running`` up); ``lingers`` how often it
        watched for the next job before sleeping and ``linger_hits`` how often a job came while it
        watched (see ``linger``); ``thread`` its thread's name and ``alive`` whether it still
        runs. Counters are per worker, written by the worker
        only: reading them takes no lock and slows nothing down.
        """
        return super().stats()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running"
        return f"<thrasks.WorkerPool {state} threads={self.size}>"

_lock = threading.Lock()
_default: WorkerPool | None = None
# Pools inherited from the parent after os.fork(): their threads do not exist in the child and
# their loops cannot be closed there, so they are kept, unused, for the child's lifetime.
_inherited: list[object] = []
_EXIT_JOIN_TIMEOUT = 5.0  # seconds, for all pools together


def default_pool() -> WorkerPool:
    """The pool groups and threaded_gather use when they are not given one.

    It is created on first use and grows to the largest ``num_threads`` asked of it.
    """
    global _default
    pool = _default
    if pool is not None and not pool.closed:
        return pool
    with _lock:
        if _default is None or _default.closed:
            _default = WorkerPool(linger=_linger_from_environment())
        return _default


def _linger_from_environment() -> bool:
    """THRASKS_LINGER for the default pool: unset, empty or ``1`` lingers, ``0`` does not."""
    value = os.environ.get("THRASKS_LINGER", "").strip()
    if value in ("", "1"):
        return True
    if value == "0":
        return False
    raise ValueError(
        f"THRASKS_LINGER must be 0 (idle workers sleep at once) or 1 (they linger), got {value!r}"
    )


def check_pool(pool: object) -> _core.WorkerPool:
    """The pool to run on: ``pool``, or the default pool if None (the C core checks the rest)."""
    if pool is None:
        return default_pool()
    if not isinstance(pool, _core.WorkerPool):
        raise TypeError(f"pool must be a thrasks.WorkerPool or None, got {type(pool).__name__}")
    pool._check()
    return pool


def _shutdown_all() -> None:
    """Stop every pool before the interpreter finalizes (an atexit hook).

    atexit hooks run after the interpreter has joined every non-daemon thread, so only daemon
    threads can still be waiting for results; like any daemon thread they are about to be
    frozen, so their outcomes are dropped rather than delivered. Running tasks are cancelled on
    their workers and given a bounded time to finish cancelling, so a task stuck in blocking
    code cannot hang the exit.
    """
    _core._discard_completions()
    pools = _core._live_pools()
    for pool in pools:
        pool.shutdown(wait=False)
    current = threading.current_thread()
    deadline = time.monotonic() + _EXIT_JOIN_TIMEOUT
    for pool in pools:
        for thread in pool._all_threads:
            if thread is not None and thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    global _default, _lock
    _inherited.extend(_core._live_pools())
    _core._after_fork_child()
    _default = None
    _lock = threading.Lock()


atexit.register(_shutdown_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
