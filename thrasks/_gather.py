"""threaded_gather: asyncio.gather with the coroutines running on worker threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, Literal, TypeVar, cast, overload

from . import _core
from ._modes import SchedulingMode, check_mode, check_num_threads
from ._pool import WorkerPool, check_pool

__all__ = ["threaded_gather"]

_T = TypeVar("_T")
_T1 = TypeVar("_T1")
_T2 = TypeVar("_T2")
_T3 = TypeVar("_T3")
_T4 = TypeVar("_T4")
_T5 = TypeVar("_T5")
_T6 = TypeVar("_T6")


def _close_all(aws: tuple[Any, ...]) -> None:
    """Close the coroutines we were given and will not run (no 'never awaited' warning)."""
    for aw in aws:
        if asyncio.iscoroutine(aw):
            aw.close()


# Typing, shaped like typeshed's asyncio.gather: one overload per arity 1..6, then one for any
# number of awaitables of one type; each in a variant with return_exceptions=False (the default:
# a list of results) and with return_exceptions: bool (results or exceptions). threaded_gather
# returns a real list, so where typeshed says tuple[T1, T2] this says list[T1 | T2].
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], /, *, num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4], /, *,
    num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], /, *, num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4 | _T5]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], aw6: Awaitable[_T6], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4 | _T5 | _T6]: ...
@overload
async def threaded_gather(
    *aws: Awaitable[_T], num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | BaseException]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | BaseException]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], /, *, num_threads: int = 4,
    return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | BaseException]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4], /, *,
    num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4 | BaseException]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4 | _T5 | BaseException]: ...
@overload
async def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], aw6: Awaitable[_T6], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T1 | _T2 | _T3 | _T4 | _T5 | _T6 | BaseException]: ...
@overload
async def threaded_gather(
    *aws: Awaitable[_T], num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> list[_T | BaseException]: ...


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
        coro_aws = cast("tuple[Coroutine[Any, Any, Any], ...]", aws)  # all coroutines (checked above)
        unique = tuple(dict.fromkeys(coro_aws))
        if len(unique) == len(coro_aws):
            return await _core.gather(coro_aws, n, return_exceptions, m, p)
        # The same coroutine object passed twice runs once, as in asyncio.gather.
        results = await _core.gather(unique, n, return_exceptions, m, p)
        by_coro = dict(zip(unique, results))
        return [by_coro[aw] for aw in coro_aws]
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
