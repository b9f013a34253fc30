"""threaded_map: a streaming map over worker threads, with a bound on the work in flight.

How it works (everything below runs on the consumer's event loop, except where noted):

* The iterator owns one plain group of the C core (``_core.Group(..., KIND_PLAIN)``): futures
  only, none of a task group's rules. In particular nothing here ever cancels the consumer's task
  (a ThreadedTaskGroup cancels its parent task when a task fails; across a ``yield`` that would be
  the consumer's own code: the PEP 789 hazard). Failures are raised from ``__anext__`` instead.
* The *window* is the set of futures created and not yet handed to the consumer (or dropped).
  ``__anext__`` refills it from the source up to ``max_in_flight`` and then waits for the next
  result, so at most ``max_in_flight`` coroutines (running, queued or finished-but-unread) exist.
  A synchronous source is advanced inline; an asynchronous one by one fetch task at a time, which
  runs concurrently with the wait for results (a source that waits for new items, such as a queue,
  never holds back results that are ready).
* Every future has a done callback (``_MapState._on_done``). It marks the outcome retrieved (no
  "exception was never retrieved" log), records the first failure and cancels everything in flight
  at once, even while the consumer is busy in the body of its loop, and wakes ``__anext__``.
* Leaving early: ``aclose()`` (also ``async with`` and ``contextlib.aclosing``) and every error
  raised by ``__anext__`` (a failure, the consumer being cancelled) cancel what is in flight and
  wait until it has finished cancelling. A bare ``break`` gives the iterator no chance to wait:
  the object is released, and its finalizer (``ThreadedMap.__del__``) requests the cancellation
  without waiting for it (thread-safe, so it may run on any thread).

The state lives in ``_MapState``, which the futures' callbacks reference; the public
``ThreadedMap`` only holds it. So the public object is never part of a reference cycle and is
released (and finalized) as soon as the consumer drops it.
"""

from __future__ import annotations

import asyncio
import collections
import types
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, Final, Generic, Literal, Self, TypeVar, overload

from . import _core
from ._modes import SchedulingMode, check_mode, check_num_threads
from ._pool import WorkerPool, check_pool

__all__ = ["DEFAULT_IN_FLIGHT_PER_THREAD", "ThreadedMap", "threaded_map"]

_A = TypeVar("_A")
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

#: ``max_in_flight`` defaults to this many coroutines per worker thread: one running and up to three
#: queued behind it, so that a worker does not idle while a finished result travels back to the
#: consumer's loop and the next item travels out, even on a busy machine where thread wake-ups
#: are slow. Measured on 2 cores with CPU-bound items of 0.1 to 0.2 ms: 2 per thread was about
#: 1.2x slower than 4, and 3 to 8 were alike (see docs/guide.md).
DEFAULT_IN_FLIGHT_PER_THREAD: Final = 4


async def _fetch(source: AsyncIterator[Any]) -> tuple[bool, Any]:
    """One item of an async source: (True, item), or (False, None) at its end."""
    try:
        return True, await anext(source)
    except StopAsyncIteration:
        return False, None


def _exception_of(fut: asyncio.Future[Any]) -> BaseException | None:
    """The outcome of a done future as an exception (CancelledError if cancelled), or None."""
    if fut.cancelled():
        try:
            fut.result()
        except asyncio.CancelledError as exc:  # carries the cancel message, if there was one
            return exc
    return fut.exception()


class _MapState:
    """The machinery of one ThreadedMap (see the module docstring)."""

    __slots__ = (
        "func", "source", "is_async", "num_threads", "mode", "pool", "max_in_flight", "ordered",
        "return_exceptions", "loop", "group", "order", "done", "window", "live", "fetch",
        "exhausted", "error", "aborted", "finished", "running", "waiter",
    )

    def __init__(
        self,
        func: Callable[[Any], Any],
        source: Iterator[Any] | AsyncIterator[Any],
        is_async: bool,
        num_threads: int,
        mode: int,
        pool: _core.WorkerPool,
        max_in_flight: int,
        ordered: bool,
        return_exceptions: bool,
    ) -> None:
        self.func = func
        self.source = source
        self.is_async = is_async
        self.num_threads = num_threads
        self.mode = mode
        self.pool = pool
        self.max_in_flight = max_in_flight
        self.ordered = ordered
        self.return_exceptions = return_exceptions
        self.loop: asyncio.AbstractEventLoop | None = None
        self.group: _core.Group | None = None
        # ordered: the window in input order; unordered: the finished futures in finishing order
        self.order: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.done: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.window = 0  # futures created and not yet yielded or dropped
        self.live = 0  # futures created whose done callback has not run yet
        self.fetch: asyncio.Task[tuple[bool, Any]] | None = None  # async source: fetch under way
        self.exhausted = False  # the source has no more items
        self.error: BaseException | None = None  # the first failure, raised by the next __anext__
        self.aborted = False  # what is in flight was cancelled by us: cancellations are ours
        self.finished = False  # no more items will be yielded
        self.running = False  # an __anext__ or aclose is in progress
        self.waiter: asyncio.Future[None] | None = None

    # -- callbacks (consumer's loop) ----------------------------------------------------------------

    def _wake(self, _: object = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_done(self, fut: asyncio.Future[Any]) -> None:
        self.live -= 1
        exc = _exception_of(fut)  # also marks an exception as retrieved
        if not self.ordered:
            self.done.append(fut)
        if (
            exc is not None
            and not self.return_exceptions
            and self.error is None
            and not self.aborted
        ):
            # The first failure: cancel everything else now, raise it from the next __anext__.
            self.error = exc
            self.abort()
        if self.ordered and not self.aborted and self.order and self.order[0] is not fut:
            return  # not the head: nothing the consumer can take yet
        self._wake()

    def _fetch_done(self, task: asyncio.Task[tuple[bool, Any]]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here; __anext__ re-raises it from task.result()
        self._wake()

    # -- cancelling ---------------------------------------------------------------------------------

    def abort(self) -> None:
        """Cancel everything in flight and start no more (does not wait)."""
        self.aborted = True
        if self.group is not None:
            self.group._abort()
        if self.fetch is not None:
            self.fetch.cancel()

    def abandon(self) -> None:
        """The consumer let go of the iterator without closing it: request the cancellations.

        Called by the finalizer, possibly on another thread (a garbage collection): the group's
        ``_abort`` is thread-safe, and the fetch task is cancelled on its own loop.
        """
        if self.group is None or self.finished and self.live == 0 and self.fetch is None:
            return
        self.aborted = True
        self.finished = True
        self.group._abort()
        fetch, loop = self.fetch, self.loop
        if fetch is not None and loop is not None and not fetch.done():
            try:
                loop.call_soon_threadsafe(fetch.cancel)
            except RuntimeError:  # the loop is closed: the task can never run again
                pass

    async def shutdown(self) -> None:
        """Cancel what is in flight and wait until it has finished cancelling.

        Like a task group's exit: if the consumer is cancelled (again) meanwhile, keep waiting,
        then re-raise the cancellation.
        """
        self.abort()
        cancelled: asyncio.CancelledError | None = None
        while self.live or (self.fetch is not None and not self.fetch.done()):
            assert self.loop is not None
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            except asyncio.CancelledError as exc:
                cancelled = exc
            finally:
                self.waiter = None
        self.fetch = None
        self.order.clear()
        self.done.clear()
        self.window = 0
        if self.group is not None:
            self.group._exiting = True
        if cancelled is not None:
            try:
                raise cancelled
            finally:
                cancelled = None

    # -- the iteration ------------------------------------------------------------------------------

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        group = _core.Group(self.num_threads, self.mode, self.pool, _core.KIND_PLAIN)
        group._bind(loop, None)
        self.loop, self.group = loop, group

    def _start(self, item: Any) -> None:
        coro = self.func(item)
        if type(coro) is not types.CoroutineType and not asyncio.iscoroutine(coro):
            raise TypeError(
                f"threaded_map() needs func to return a coroutine (an async def function), but "
                f"func({item!r:.60}) returned {type(coro).__name__}"
            )
        assert self.group is not None
        fut = self.group.create_task(coro)  # closes coro itself if it cannot run it
        fut.add_done_callback(self._on_done)
        self.window += 1
        self.live += 1
        if self.ordered:
            self.order.append(fut)

    def _fill(self) -> None:
        """Start items until the window is full or the source has none ready."""
        while self.window < self.max_in_flight and not self.exhausted and self.error is None:
            if not self.is_async:
                try:
                    item = next(self.source)  # type: ignore[arg-type]
                except StopIteration:
                    self.exhausted = True
                    return
                self._start(item)
                continue
            fetch = self.fetch
            if fetch is None:
                assert self.loop is not None
                self.fetch = fetch = self.loop.create_task(_fetch(self.source))  # type: ignore[arg-type]
                fetch.add_done_callback(self._fetch_done)
            if not fetch.done():
                return
            self.fetch = None
            found, item = fetch.result()  # the source's own error, if it raised
            if not found:
                self.exhausted = True
                return
            self._start(item)

    def _take(self) -> asyncio.Future[Any] | None:
        """The next finished future to hand out, if there is one."""
        if self.ordered:
            if self.order and self.order[0].done():
                return self.order.popleft()
            return None
        return self.done.popleft() if self.done else None

    def _outcome(self, fut: asyncio.Future[Any]) -> Any:
        self.window -= 1
        exc = _exception_of(fut)
        if exc is None:
            return fut.result()
        if self.return_exceptions:
            return exc
        raise exc  # a failure whose callback has not run yet (ordered head): same as self.error

    async def advance(self) -> Any:
        """The body of ``__anext__``."""
        if self.running:
            raise RuntimeError("anext(): threaded_map() is already running (in another task)")
        if self.loop is not None and asyncio.get_running_loop() is not self.loop:
            raise RuntimeError(
                "threaded_map() is iterated from another event loop than the one it started on"
            )
        if self.finished and self.error is None:
            raise StopAsyncIteration
        self.running = True
        try:
            if self.loop is None:
                self._bind()
            while True:
                if self.error is not None:
                    raise self.error
                self._fill()
                fut = self._take()
                if fut is not None:
                    return self._outcome(fut)
                if self.window == 0 and self.exhausted:
                    self.finished = True
                    if self.group is not None:
                        self.group._exiting = True
                    break
                assert self.loop is not None
                self.waiter = self.loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
        except BaseException:
            # A failure, an error of the source or of func (even a StopAsyncIteration of theirs),
            # or the consumer being cancelled: nothing more will be yielded; cancel what is in
            # flight and wait for it.
            self.finished = True
            self.error = None
            if self.loop is not None:
                await self.shutdown()
            raise
        finally:
            self.running = False
        raise StopAsyncIteration  # the items ran out and every result was handed out

    async def aclose(self) -> None:
        if self.running:
            raise RuntimeError("aclose(): threaded_map() is already running (in another task)")
        self.finished = True
        self.error = None  # a failure not raised yet is dropped with the results
        if self.loop is None or (self.live == 0 and self.fetch is None):
            return  # never iterated, or nothing in flight any more
        self.running = True
        try:
            await self.shutdown()
        finally:
            self.running = False


class ThreadedMap(AsyncIterator[_T_co], Generic[_T_co]):
    """The async iterator returned by :func:`threaded_map`.

    Iterate it with ``async for``. :meth:`aclose` (or ``async with``, or
    :func:`contextlib.aclosing`) stops it early: what is in flight is cancelled and waited for.
    """

    __slots__ = ("_state",)

    def __init__(self, state: _MapState) -> None:
        self._state = state

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _T_co:
        # A coroutine of its own (not the state's) so that the iterator stays referenced, hence
        # not finalized, while an __anext__ is in progress.
        result: _T_co = await self._state.advance()
        return result

    async def aclose(self) -> None:
        """Stop early: cancel what is in flight and wait until it has finished cancelling.

        Results and failures not yet yielded are dropped. Closing a finished (or never started)
        iterator does nothing. Raises :class:`RuntimeError` if an ``__anext__`` is in progress
        in another task.
        """
        await self._state.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._state.aclose()

    def __del__(self) -> None:
        try:
            self._state.abandon()
        except AttributeError:  # __init__ did not run
            pass

    def __repr__(self) -> str:
        s = self._state
        state = "finished" if s.finished else ("running" if s.loop is not None else "not started")
        return f"<thrasks.ThreadedMap {state} in_flight={s.window} max_in_flight={s.max_in_flight}>"


@overload
def threaded_map(
    func: Callable[[_A], Coroutine[Any, Any, _T]],
    items: Iterable[_A] | AsyncIterable[_A],
    *,
    num_threads: int = 4,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    pool: WorkerPool | None = None,
    max_in_flight: int | None = None,
    ordered: bool = True,
    return_exceptions: Literal[False] = False,
) -> ThreadedMap[_T]: ...
@overload
def threaded_map(
    func: Callable[[_A], Coroutine[Any, Any, _T]],
    items: Iterable[_A] | AsyncIterable[_A],
    *,
    num_threads: int = 4,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    pool: WorkerPool | None = None,
    max_in_flight: int | None = None,
    ordered: bool = True,
    return_exceptions: bool,
) -> ThreadedMap[_T | BaseException]: ...


def threaded_map(
    func: Callable[[Any], Coroutine[Any, Any, Any]],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    num_threads: int = 4,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    pool: WorkerPool | None = None,
    max_in_flight: int | None = None,
    ordered: bool = True,
    return_exceptions: bool = False,
) -> ThreadedMap[Any]:
    """Run ``func(item)`` for every item on worker threads; iterate over the results.

    A streaming :func:`threaded_gather`: ``items`` (an iterable or an async iterable) is consumed
    lazily, and at most ``max_in_flight`` coroutines exist at any moment, counting those running
    or queued on the workers and finished results not yet read. A million items never means a
    million coroutines in memory:

        async for row in threaded_map(parse, lines, num_threads=4):
            total += row.amount

    Results come in input order (``ordered=True``, the default) or as they complete
    (``ordered=False``). With ``ordered=True`` a slow item holds back the results after it, and
    the window does not move past it.

    Failures follow :func:`asyncio.gather`: with ``return_exceptions=False`` the first failure
    (the first to *happen*, in either order) cancels everything in flight, which is waited for,
    and is raised by the iteration; results not yet read are dropped. With
    ``return_exceptions=True`` an exception is yielded in place of its result. A coroutine that
    ends cancelled on its own counts as a failure with :class:`asyncio.CancelledError`.
    An exception raised by the source itself, or by calling ``func``, ends the iteration the
    same way, even with ``return_exceptions=True``.

    Leaving early: ``aclose()``, an ``async with`` block around the iteration, an exception
    raised by the iteration, or the consumer being cancelled while it waits for the next result,
    cancels what is in flight and waits until it has finished cancelling. After a plain
    ``break`` (or an exception in the loop's body) Python gives the iterator no chance to wait:
    the cancellation is requested when the iterator is released, without waiting. To wait, use
    ``async with threaded_map(...) as results:`` (or :func:`contextlib.aclosing`). An item
    being fetched from an async iterable when the iteration stops is cancelled with it.

    Args:
        func: An ``async def`` function of one argument; ``func(item)`` is called on the
            consumer's thread, in its context, and the coroutine runs on a worker.
        items: The inputs: any iterable or async iterable. It is advanced only as the window
            has room.
        num_threads: Number of worker threads to spread the coroutines over (default 4).
        mode: :class:`SchedulingMode.ROUND_ROBIN` (default) or :class:`SchedulingMode.QUEUE`.
        pool: The :class:`WorkerPool` to run on, or None for the default pool.
        max_in_flight: The bound on coroutines in existence (default:
            ``4 * num_threads``: one running and a few waiting per worker, so that no worker
            idles while results and new items cross between the threads; raise it for
            coroutines that mostly wait on I/O, or when ``ordered=True`` meets uneven items).
        ordered: Yield results in input order (default) or as they complete.
        return_exceptions: Yield exceptions as results instead of raising the first one.

    Returns:
        An async iterator (:class:`ThreadedMap`) of the results, which also has
            ``aclose()`` and is an async context manager. Nothing starts until it is first
            iterated; it then belongs to that event loop.

    Raises:
        TypeError: ``func`` is not callable, ``items`` is neither an iterable nor an async
            iterable, or an argument has the wrong type (at call time); ``func`` returned
            something other than a coroutine (during the iteration).
        ValueError: ``num_threads`` or ``max_in_flight`` is out of range (at call time).
    """
    if not callable(func):
        raise TypeError(f"threaded_map() func must be callable (an async def function), got {func!r}")
    n = check_num_threads(num_threads)
    m = check_mode(mode)
    if max_in_flight is None:
        limit = DEFAULT_IN_FLIGHT_PER_THREAD * n
    elif type(max_in_flight) is bool or not isinstance(max_in_flight, int):
        raise TypeError(
            f"max_in_flight must be an int or None, got {type(max_in_flight).__name__}"
        )
    elif max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    else:
        limit = max_in_flight
    source: Iterator[Any] | AsyncIterator[Any]
    if hasattr(type(items), "__aiter__"):
        source, is_async = aiter(items), True  # type: ignore[arg-type]
    else:
        try:
            source, is_async = iter(items), False  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"threaded_map() items must be an iterable or an async iterable, "
                f"got {type(items).__name__}"
            ) from None
    p = check_pool(pool)
    state = _MapState(func, source, is_async, n, m, p, limit, bool(ordered), bool(return_exceptions))
    return ThreadedMap(state)
