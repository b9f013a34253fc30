"""threaded_gather: asyncio.gather with the coroutines running on worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from . import _core
from ._modes import SchedulingMode, check_mode, check_num_threads
from ._pool import WorkerPool, check_pool

__all__ = ["threaded_gather"]


def _close_all(aws: tuple[Any, ...]) -> None:
    """Close the coroutines we were given and will not run (no 'never awaited' warning)."""
    for aw in aws:
        if asyncio.iscoroutine(aw):
            aw.close()


async def threaded_gather(
    *aws: Awaitable[Any],
    num_threads: int = 4,
    return_exceptions: bool = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    pool: WorkerPool | None = None,
) -> list[Any]:
    """Run awaitables concurrently, the coroutines among them on worker threads.

    Like :func:`asyncio.gather`: the results come back in the order of ``aws``; with
    ``return_exceptions=False`` (default) the first exception is raised (the other awaitables
    keep running), with ``return_exceptions=True`` exceptions are returned in the results; if
    the gather is cancelled, every awaitable still running is cancelled.

    Coroutines are run on ``num_threads`` worker threads of ``pool`` (the shared default pool
    if None), spread by ``mode``. Tasks and futures passed in are awaited where they are, as
    :func:`asyncio.gather` would, so a mix of both works.

    Args:
        *aws: Coroutines, tasks or futures.
        num_threads: Number of worker threads for the coroutines (default 4).
        return_exceptions: Return exceptions as results instead of raising the first one.
        mode: :class:`SchedulingMode.ROUND_ROBIN` (default) or :class:`SchedulingMode.QUEUE`.
        pool: The :class:`WorkerPool` to run on, or None for the default pool.

    Returns:
        The list of results, in input order.
    """
    try:
        n = check_num_threads(num_threads)
        m = check_mode(mode)
        p = check_pool(pool)
        coros = [asyncio.iscoroutine(aw) for aw in aws]
        if not all(coros):
            for aw, is_coro in zip(aws, coros):
                if not is_coro and not asyncio.isfuture(aw) and not hasattr(aw, "__await__"):
                    raise TypeError(
                        f"An asyncio.Future, a coroutine or an awaitable is required, got {aw!r}"
                    )
    except BaseException:
        _close_all(aws)
        raise
    if not aws:
        return []
    if all(coros):
        unique = tuple(dict.fromkeys(aws))
        if len(unique) == len(aws):
            return await _core.gather(aws, n, return_exceptions, m, p)
        # The same coroutine object passed twice runs once, as in asyncio.gather.
        results = await _core.gather(unique, n, return_exceptions, m, p)
        by_coro = dict(zip(unique, results))
        return [by_coro[aw] for aw in aws]
    return await _gather_mixed(aws, coros, n, m, p, return_exceptions)


async def _gather_mixed(
    aws: tuple[Any, ...],
    coros: list[bool],
    num_threads: int,
    mode: int,
    pool: WorkerPool,
    return_exceptions: bool,
) -> list[Any]:
    """Coroutines go to the workers; everything is then gathered by asyncio.gather itself."""
    group = _core.Group(num_threads, mode, pool, _core.KIND_PLAIN)
    group._bind(asyncio.get_running_loop(), None)
    children: list[Any] = []
    started: dict[Any, Any] = {}  # a coroutine passed twice runs once, as in asyncio.gather
    try:
        for aw, is_coro in zip(aws, coros):
            if is_coro and aw not in started:
                started[aw] = group.create_task(aw)
            children.append(started[aw] if is_coro else aw)
    except BaseException:
        _close_all(aws[len(children) + 1 :])
        for child in children:
            if isinstance(child, _core.Future):
                child.cancel()
        raise
    group._exiting = True
    return await asyncio.gather(*children, return_exceptions=return_exceptions)
