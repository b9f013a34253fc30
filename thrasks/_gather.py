"""threaded_gather: asyncio.gather with the coroutines running on worker threads."""

from __future__ import annotations

import asyncio
import collections.abc
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Literal, TypeVar, cast, overload

from . import _core
from ._modes import SchedulingMode, check_mode
from ._pool import WorkerPool, check_pool

__all__ = ["threaded_gather"]

# The fast path's check: exact types only, so that it runs in C (map, set, a subset test).
_COROUTINE_TYPE = frozenset({types.CoroutineType})

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
def threaded_gather(
    aw1: Awaitable[_T1], /, *, num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4], /, *,
    num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], /, *, num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4 | _T5]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], aw6: Awaitable[_T6], /, *, num_threads: int = 4,
    return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4 | _T5 | _T6]]: ...
@overload
def threaded_gather(
    *aws: Awaitable[_T], num_threads: int = 4, return_exceptions: Literal[False] = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | BaseException]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | BaseException]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], /, *, num_threads: int = 4,
    return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | BaseException]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4], /, *,
    num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4 | BaseException]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4 | _T5 | BaseException]]: ...
@overload
def threaded_gather(
    aw1: Awaitable[_T1], aw2: Awaitable[_T2], aw3: Awaitable[_T3], aw4: Awaitable[_T4],
    aw5: Awaitable[_T5], aw6: Awaitable[_T6], /, *, num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T1 | _T2 | _T3 | _T4 | _T5 | _T6 | BaseException]]: ...
@overload
def threaded_gather(
    *aws: Awaitable[_T], num_threads: int = 4, return_exceptions: bool,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN, pool: WorkerPool | None = None,
) -> _core.GatheringFuture[list[_T | BaseException]]: ...


def threaded_gather(
    *aws: Awaitable[Any],
    num_threads: int = 4,
    return_exceptions: bool = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    pool: WorkerPool | None = None,
) -> Any:
    """Run awaitables concurrently, the coroutines among them on worker threads.

    Like :func:`asyncio.gather`: it starts everything at once and returns a future of the
    results, in the order of ``aws``; with ``return_exceptions=False`` (default) the first
    exception is raised (the other awaitables keep running), with ``return_exceptions=True``
    exceptions are returned in the results; if the future is cancelled, every awaitable still
    running is cancelled. Bad arguments raise at once, as with :func:`asyncio.gather`, and every
    coroutine passed in is then closed (no "never awaited" warning).

    Coroutines are run on ``num_threads`` worker threads of ``pool`` (the shared default pool
    if None), spread by ``mode``. Tasks and futures passed in are awaited where they are, as
    :func:`asyncio.gather` would, so a mix of both works. It must be called from a coroutine
    (a running event loop), like ``asyncio.gather`` with coroutine arguments.

    Args:
        *aws: Coroutines, tasks or futures.
        num_threads: Number of worker threads for the coroutines (default 4).
        return_exceptions: Return exceptions as results instead of raising the first one.
        mode: :class:`SchedulingMode.ROUND_ROBIN` (default) or :class:`SchedulingMode.QUEUE`.
        pool: The :class:`WorkerPool` to run on, or None for the default pool.

    Returns:
        A future of the list of results, in input order: ``await`` it. It is also a coroutine,
        so it can be passed to :func:`asyncio.create_task` or :func:`asyncio.run` like the seed
        library's ``async def threaded_gather``.
    """
    if (
        aws
        and type(mode) is SchedulingMode
        and set(map(type, aws)) <= _COROUTINE_TYPE
        and asyncio._get_running_loop() is not None
    ):
        # The common case, checked without a Python call per awaitable: plain coroutines and a
        # running loop. The C core checks the rest (and closes every coroutine on an error).
        try:
            p = check_pool(pool)
        except BaseException:
            _close_all(aws)
            raise
        coroutines = cast("tuple[Coroutine[Any, Any, Any], ...]", aws)  # checked just above
        return _core.gather(coroutines, num_threads, return_exceptions, mode.value, p)
    try:
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
    if asyncio._get_running_loop() is None:
        # Called outside a coroutine (e.g. asyncio.run(threaded_gather(...))): check now, start
        # when awaited, on the loop that awaits it.
        try:
            _core._check_num_threads(num_threads)
        except BaseException:
            _close_all(aws)
            raise
        return _Deferred(aws, coros, num_threads, m, p, return_exceptions)
    return _start(aws, coros, num_threads, m, p, return_exceptions)


def _start(
    aws: tuple[Any, ...],
    coros: list[bool],
    num_threads: int,
    mode: int,
    pool: _core.WorkerPool,
    return_exceptions: bool,
) -> asyncio.Future[list[Any]]:
    if all(coros):
        # The C core validates num_threads, starts every coroutine (a coroutine passed twice
        # runs once, as in asyncio.gather) and closes them all if anything fails.
        coroutines = cast("tuple[Coroutine[Any, Any, Any], ...]", aws)  # all coroutines (checked)
        return _core.gather(coroutines, num_threads, return_exceptions, mode, pool)
    return _gather_mixed(aws, coros, num_threads, mode, pool, return_exceptions)


# threaded_gather's result is accepted wherever a coroutine is (asyncio.create_task,
# TaskGroup.create_task, asyncio.run): the seed library's threaded_gather was an `async def`.
collections.abc.Coroutine.register(_core.GatheringFuture)


class _Deferred(collections.abc.Coroutine[Any, Any, list[Any]]):
    """threaded_gather called with no running loop: a coroutine that starts the gather on the
    loop that runs it. Closed, or dropped without being run, it closes the coroutines it took."""

    __slots__ = ("_args", "_coro")

    def __init__(self, *args: Any) -> None:
        self._args: tuple[Any, ...] | None = args
        self._coro: Coroutine[Any, Any, list[Any]] | None = None

    def _run(self) -> Coroutine[Any, Any, list[Any]]:
        if self._coro is None:
            if self._args is None:
                raise RuntimeError("cannot reuse already awaited threaded_gather()")
            args, self._args = self._args, None
            self._coro = _await(_start(*args))
        return self._coro

    def __await__(self) -> Generator[Any, None, list[Any]]:
        return self._run().__await__()

    def send(self, value: Any) -> Any:
        return self._run().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._run().throw(typ)
        return self._run().throw(typ, val, tb)

    def close(self) -> None:
        if self._args is not None:
            _close_all(self._args[0])
            self._args = None
        elif self._coro is not None:
            self._coro.close()

    def __del__(self) -> None:
        if self._args is not None:
            _close_all(self._args[0])


async def _await(future: asyncio.Future[list[Any]]) -> list[Any]:
    return await future


def _gather_mixed(
    aws: tuple[Any, ...],
    coros: list[bool],
    num_threads: int,
    mode: int,
    pool: _core.WorkerPool,
    return_exceptions: bool,
) -> asyncio.Future[list[Any]]:
    """Coroutines go to the workers; everything is then gathered by asyncio.gather itself."""
    try:
        group = _core.Group(num_threads, mode, pool, _core.KIND_PLAIN)
        group._bind(asyncio.get_running_loop(), None)
    except BaseException:
        _close_all(aws)
        raise
    children: list[Any] = []
    started: dict[Any, Any] = {}  # a coroutine passed twice runs once, as in asyncio.gather
    try:
        for aw, is_coro in zip(aws, coros):
            if is_coro and aw not in started:
                started[aw] = group.create_task(aw)
            children.append(started[aw] if is_coro else aw)
    except BaseException:
        # create_task closed the coroutine it failed on; close those never reached, except the
        # ones already running on a worker (the same coroutine passed twice).
        _close_all(tuple(aw for aw in aws[len(children) + 1 :] if aw not in started))
        for child in children:
            if isinstance(child, _core.Future):
                child.cancel()
        raise
    group._exiting = True
    gathered: asyncio.Future[list[Any]] = asyncio.gather(*children, return_exceptions=return_exceptions)
    return gathered
