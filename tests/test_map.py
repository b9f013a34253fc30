"""threaded_map: a lazy, bounded, streaming map over worker threads.

Every coroutine a test's ``func`` creates is tracked (``Tracker``): when it was created, whether its
body started, was cancelled, ended, and, at the end, that every one of them is closed (ran to its
end, or was closed without running). The in-flight bound is asserted by counting, never by timing,
and the hang guards only turn a hang into a failure.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import contextvars
import gc
import inspect
import itertools
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import thrasks
from thrasks import SchedulingMode, ThreadedMap, WorkerPool, threaded_map

GUARD = 20.0  # seconds: waits for a worker-side event; only a hang reaches it


# ---- helpers ------------------------------------------------------------------------------------


class Tracker:
    """Thread-safe record of the coroutines made by ``func = tracker.wrap(body)``.

    ``alive`` counts coroutines created and not ended (the body's ``finally`` ran); ``peak_alive``
    is its maximum, sampled each time a coroutine is created. ``coros`` keeps every coroutine
    object, so that a test can check that all of them are closed in the end.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.coros: list[Any] = []
        self.alive = 0
        self.peak_alive = 0
        self.running = 0
        self.peak_running = 0
        self.started: set[Any] = set()
        self.cancelled: set[Any] = set()
        self.ended: set[Any] = set()

    def wrap(self, body: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Any]:
        def func(item: Any) -> Any:
            coro = self._run(body, item)
            with self.lock:
                self.coros.append(coro)
                self.alive += 1
                self.peak_alive = max(self.peak_alive, self.alive)
            return coro

        return func

    async def _run(self, body: Callable[[Any], Awaitable[Any]], item: Any) -> Any:
        with self.lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            self.started.add(item)
        try:
            return await body(item)
        except asyncio.CancelledError:
            with self.lock:
                self.cancelled.add(item)
            raise
        finally:
            with self.lock:
                self.running -= 1
                self.alive -= 1
                self.ended.add(item)

    @property
    def created(self) -> int:
        with self.lock:
            return len(self.coros)

    def all_closed(self) -> bool:
        """Every coroutine created ran to its end or was closed without running."""
        with self.lock:
            coros = list(self.coros)
        return all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)

    def started_have_ended(self) -> bool:
        with self.lock:
            return self.started == self.ended

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Let the caller's loop run until ``condition()`` holds (the hang guard bounds it)."""
        async with asyncio.timeout(GUARD):
            while True:
                with self.lock:
                    if condition():
                        return
                await asyncio.sleep(0.001)


async def forever(item: Any) -> Any:
    await asyncio.sleep(3600)
    return item


async def double(item: int) -> int:
    await asyncio.sleep(0)
    return item * 2


async def aiter_of(items: Iterable[Any]) -> AsyncIterator[Any]:
    for i, item in enumerate(items):
        if i % 2:
            await asyncio.sleep(0)
        yield item


def only_this_task_is_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


# ---- results ------------------------------------------------------------------------------------


async def test_results_come_in_input_order(mode):
    async def later_items_finish_first(i: int) -> int:
        await asyncio.sleep(0.001 * (10 - i))
        return i

    results = [r async for r in threaded_map(later_items_finish_first, range(10), num_threads=3, mode=mode)]
    assert results == list(range(10))


async def test_unordered_yields_a_result_before_an_earlier_item_finishes(mode):
    """Item 0 cannot finish until the consumer has seen item 1's result."""
    seen_one = threading.Event()

    async def body(i: int) -> int:
        if i == 0:
            while not seen_one.is_set():
                await asyncio.sleep(0.001)
        return i

    results = []
    async for r in threaded_map(body, [0, 1], num_threads=2, mode=mode, ordered=False):
        results.append(r)
        if r == 1:
            seen_one.set()
    assert results == [1, 0]


async def test_empty_source_yields_nothing(mode):
    assert [r async for r in threaded_map(double, [], mode=mode)] == []
    assert [r async for r in threaded_map(double, aiter_of([]), mode=mode)] == []


async def test_async_iterable_source(mode):
    results = [r async for r in threaded_map(double, aiter_of(range(20)), num_threads=2, mode=mode)]
    assert results == [2 * i for i in range(20)]


async def test_coroutines_run_on_worker_threads(mode):
    async def where(_: int) -> int:
        return threading.get_ident()

    idents = [r async for r in threaded_map(where, range(6), num_threads=2, mode=mode)]
    assert threading.get_ident() not in idents


async def test_func_is_called_in_the_consumers_context(mode):
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def read(_: int) -> str:
        return var.get()

    var.set("consumer")
    assert [r async for r in threaded_map(read, range(3), mode=mode)] == ["consumer"] * 3


async def test_runs_on_the_given_pool(pool):
    async def where(_: int) -> str:
        return threading.current_thread().name

    names = {r async for r in threaded_map(where, range(8), num_threads=2, pool=pool)}
    assert names <= {t.name for t in pool.threads} and pool.size == 2


async def test_an_async_source_waiting_for_the_consumer_does_not_hold_back_results(mode):
    """A crawl frontier: the next item exists only once the consumer has seen a result."""
    frontier: asyncio.Queue[int | None] = asyncio.Queue()
    frontier.put_nowait(0)

    async def items() -> AsyncIterator[int]:
        while (item := await frontier.get()) is not None:
            yield item

    results = []
    async for r in threaded_map(double, items(), num_threads=2, mode=mode):
        results.append(r)
        frontier.put_nowait(len(results) if len(results) < 5 else None)
    assert results == [0, 2, 4, 6, 8]


# ---- the in-flight bound ------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("max_in_flight", [1, 3, 8])
@pytest.mark.parametrize("source", ["sync", "async"])
async def test_coroutines_in_existence_never_exceed_max_in_flight(mode, ordered, max_in_flight, source):
    """Created-not-ended coroutines, and created-not-yielded results, stay <= max_in_flight; the
    coroutines wait until the window is full once, so the bound is reached, not just respected."""
    tracker = Tracker()
    window_full = threading.Event()

    async def body(i: int) -> int:
        while not window_full.is_set():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)
        return i

    def func(i: int) -> Any:
        coro = tracker.wrap(body)(i)
        if tracker.created == max_in_flight:
            window_full.set()
        return coro

    n = 5 * max_in_flight + 3
    items: Any = range(n) if source == "sync" else aiter_of(range(n))
    results = []
    async for r in threaded_map(func, items, num_threads=2, mode=mode, max_in_flight=max_in_flight, ordered=ordered):
        # created and not yet yielded: the window (finished results waiting here count too)
        assert tracker.created - len(results) <= max_in_flight
        results.append(r)
        await asyncio.sleep(0)  # a consumer that takes its time
    assert sorted(results) == list(range(n))
    assert tracker.peak_alive == max_in_flight
    assert tracker.peak_running <= max_in_flight
    assert tracker.all_closed()


async def test_default_max_in_flight_is_four_per_thread(mode):
    tracker = Tracker()
    results = []
    async for r in threaded_map(tracker.wrap(double), range(40), num_threads=3, mode=mode):
        assert tracker.created - len(results) <= 12
        results.append(r)
    assert results == [2 * i for i in range(40)]
    assert tracker.peak_alive <= 12
    assert thrasks._map.DEFAULT_IN_FLIGHT_PER_THREAD == 4


async def test_a_million_item_source_is_consumed_lazily(mode):
    pulled = 0

    def million() -> Iterable[int]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield i

    results = []
    async with threaded_map(double, million(), num_threads=2, mode=mode, max_in_flight=8) as it:
        async for r in it:
            assert pulled <= len(results) + 8
            results.append(r)
            if len(results) == 200:
                break
    assert results == [2 * i for i in range(200)]
    assert pulled <= 200 + 8


async def test_an_infinite_async_source_is_consumed_lazily(mode):
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        for i in itertools.count():
            nonlocal pulled
            pulled += 1
            yield i

    results = []
    async with threaded_map(double, endless(), num_threads=2, mode=mode, max_in_flight=4) as it:
        async for r in it:
            # one more item may be fetched (not started) while the window is full
            assert pulled <= len(results) + 4 + 1
            results.append(r)
            if len(results) == 100:
                break
    assert results == [2 * i for i in range(100)]
    assert only_this_task_is_left()


async def test_a_finished_map_lets_go_of_its_source_without_a_garbage_collection(mode):
    def source() -> Iterable[int]:
        yield from range(10)

    items = source()
    ref = weakref.ref(items)
    gc.disable()  # released by reference counting alone: no cycle keeps the map's state alive
    try:
        it = threaded_map(double, items, num_threads=2, mode=mode)
        del items
        assert [r async for r in it] == [2 * i for i in range(10)]
        del it
        # the done callbacks of the last results may still be scheduled: let them run
        for _ in range(3):
            await asyncio.sleep(0)
        assert ref() is None
    finally:
        gc.enable()


# ---- failures -----------------------------------------------------------------------------------


async def test_first_failure_is_raised_and_cancels_the_rest(mode):
    tracker = Tracker()
    boom = ValueError("boom")

    async def body(i: int) -> int:
        if i == 3:
            # fail once the others are running, so that they are cancelled, not just never started
            await tracker.wait_for(lambda: len(tracker.started) == 6)
            raise boom
        return await forever(i)

    with pytest.raises(ValueError) as excinfo:
        async for _ in threaded_map(tracker.wrap(body), range(6), num_threads=2, mode=mode, max_in_flight=6):
            pass
    assert excinfo.value is boom
    # raised only once the others have finished cancelling
    assert tracker.cancelled == {0, 1, 2, 4, 5}
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_first_failure_cancels_the_rest_while_the_consumer_is_busy(mode):
    """The failure is acted upon at once, not at the consumer's next __anext__."""
    tracker = Tracker()
    in_body = threading.Event()

    async def body(i: int) -> int:
        if i == 0:
            return 0
        if i == 1:  # fails once the consumer is in its loop body and 2, 3 are running
            while not (in_body.is_set() and {2, 3} <= tracker.started):
                await asyncio.sleep(0.001)
            raise KeyError("late")
        return await forever(i)

    it = threaded_map(tracker.wrap(body), range(4), num_threads=2, mode=mode, max_in_flight=4)
    assert await anext(it) == 0
    in_body.set()
    await tracker.wait_for(lambda: tracker.cancelled == {2, 3})
    with pytest.raises(KeyError):
        await anext(it)
    assert tracker.all_closed()


async def test_iteration_ends_after_a_failure(mode):
    async def body(i: int) -> int:
        if i == 1:
            raise RuntimeError("x")
        return i

    it = threaded_map(body, range(3), mode=mode, max_in_flight=1)
    assert await anext(it) == 0
    with pytest.raises(RuntimeError):
        await anext(it)
    with pytest.raises(StopAsyncIteration):
        await anext(it)


async def test_return_exceptions_yields_exceptions_in_place(mode):
    errors = {1: ValueError("one"), 3: KeyError("three")}

    async def body(i: int) -> int:
        await asyncio.sleep(0)
        if i in errors:
            raise errors[i]
        return i

    results = [r async for r in threaded_map(body, range(5), num_threads=2, mode=mode, return_exceptions=True)]
    assert results == [0, errors[1], 2, errors[3], 4]


async def test_a_coroutine_cancelled_on_its_own_is_a_failure(mode):
    async def body(i: int) -> int:
        if i == 1:
            raise asyncio.CancelledError("gave up")
        return i

    with pytest.raises(asyncio.CancelledError):
        async for _ in threaded_map(body, range(3), mode=mode, max_in_flight=1):
            pass
    results = [r async for r in threaded_map(body, range(3), mode=mode, return_exceptions=True)]
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], asyncio.CancelledError)


async def test_an_error_of_the_source_is_raised_and_cancels_the_rest(mode):
    tracker = Tracker()

    def items() -> Iterable[int]:
        yield 0
        yield 1
        raise OSError("source broke")

    with pytest.raises(OSError, match="source broke"):
        async for _ in threaded_map(tracker.wrap(forever), items(), num_threads=2, mode=mode, max_in_flight=4):
            pass
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_an_error_of_an_async_source_is_raised_even_with_return_exceptions(mode):
    async def items() -> AsyncIterator[int]:
        yield 0
        await asyncio.sleep(0)
        raise OSError("source broke")

    results = []
    with pytest.raises(OSError, match="source broke"):
        async for r in threaded_map(double, items(), mode=mode, return_exceptions=True, max_in_flight=1):
            results.append(r)
    assert results == [0]
    assert only_this_task_is_left()


async def test_func_raising_is_raised_and_cancels_the_rest(mode):
    tracker = Tracker()
    run_forever = tracker.wrap(forever)

    def func(i: int) -> Any:
        if i == 2:
            raise ZeroDivisionError("bad item")
        return run_forever(i)

    with pytest.raises(ZeroDivisionError):
        async for _ in threaded_map(func, range(5), num_threads=2, mode=mode):
            pass
    assert tracker.created == 2 and tracker.all_closed()


async def test_a_stop_async_iteration_from_func_still_cancels_what_is_in_flight(mode):
    """The consumer's loop ends (that is what the exception means to async for), nothing runs on."""
    tracker = Tracker()
    run_forever = tracker.wrap(forever)

    def func(i: int) -> Any:
        if i == 2:
            raise StopAsyncIteration
        return run_forever(i)

    async for _ in threaded_map(func, range(5), num_threads=2, mode=mode):
        pytest.fail("no result was expected")
    assert tracker.created == 2 and tracker.started_have_ended() and tracker.all_closed()


async def test_func_returning_a_non_coroutine_raises_type_error(mode):
    tracker = Tracker()
    run_forever = tracker.wrap(forever)

    def func(i: int) -> Any:
        return run_forever(i) if i == 0 else i

    with pytest.raises(TypeError, match=r"func to return a coroutine .* func\(1\) returned int"):
        async for _ in threaded_map(func, range(3), mode=mode):
            pass
    assert tracker.all_closed()


# ---- leaving early ------------------------------------------------------------------------------


async def start_four_forever(mode: SchedulingMode, tracker: Tracker, **kwargs: Any) -> ThreadedMap[Any]:
    """A map of five items whose first result was read and whose four others run forever."""

    async def body(i: int) -> int:
        return i if i == 0 else await forever(i)

    it = threaded_map(tracker.wrap(body), range(5), num_threads=2, mode=mode, max_in_flight=5, **kwargs)
    assert await anext(it) == 0
    await tracker.wait_for(lambda: len(tracker.started) == 5)
    return it


async def test_aclose_cancels_what_is_in_flight_and_waits_for_it(mode):
    tracker = Tracker()
    it = await start_four_forever(mode, tracker)
    await it.aclose()
    # no waiting after aclose(): it returned only once everything had finished cancelling
    assert tracker.cancelled == {1, 2, 3, 4}
    assert tracker.started_have_ended() and tracker.all_closed()
    assert tracker.created == 5  # nothing new was started
    with pytest.raises(StopAsyncIteration):
        await anext(it)


async def test_break_inside_async_with_cancels_and_waits(mode):
    tracker = Tracker()

    async def body(i: int) -> int:
        return i if i < 2 else await forever(i)

    async with threaded_map(tracker.wrap(body), range(100), num_threads=2, mode=mode, max_in_flight=6) as it:
        async for r in it:
            if r == 1:
                # every coroutine created has started (one cancelled before it starts never runs,
                # as in asyncio), so each still in flight must see the cancel
                await tracker.wait_for(lambda: len(tracker.started) == len(tracker.coros))
                break
    assert tracker.cancelled == {i for i in tracker.started if i >= 2} != set()
    assert tracker.started_have_ended() and tracker.all_closed()
    assert only_this_task_is_left()


async def test_exception_in_the_body_inside_async_with_cancels_and_waits(mode):
    tracker = Tracker()
    with pytest.raises(LookupError):
        async with await start_four_forever(mode, tracker):
            raise LookupError("consumer failed")
    assert tracker.cancelled == {1, 2, 3, 4}
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_contextlib_aclosing_works(mode):
    tracker = Tracker()
    async with contextlib.aclosing(await start_four_forever(mode, tracker)):
        pass
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_plain_break_cancels_what_is_in_flight(mode):
    """Without async with, the cancellation is requested when the iterator is released."""
    tracker = Tracker()

    async def body(i: int) -> int:
        return i if i < 2 else await forever(i)

    async for r in threaded_map(tracker.wrap(body), range(100), num_threads=2, mode=mode, max_in_flight=6):
        if r == 1:  # items 0..6 were started: the window was refilled once after item 0
            await tracker.wait_for(lambda: len(tracker.started) == 7)
            break
    await tracker.wait_for(lambda: tracker.started == tracker.ended)
    assert tracker.cancelled == {2, 3, 4, 5, 6}
    assert tracker.created == 7


async def test_plain_exception_in_the_body_cancels_what_is_in_flight(mode):
    tracker = Tracker()

    async def body(i: int) -> int:
        return i if i < 2 else await forever(i)

    async def consume() -> None:
        async for r in threaded_map(tracker.wrap(body), range(6), num_threads=2, mode=mode, max_in_flight=6):
            if r == 1:
                await tracker.wait_for(lambda: len(tracker.started) == 6)
                raise LookupError("consumer failed")

    with pytest.raises(LookupError):
        await consume()
    await tracker.wait_for(lambda: tracker.started == tracker.ended)
    assert tracker.cancelled == {2, 3, 4, 5}


def test_abandoning_a_map_then_closing_the_loop_leaves_nothing_behind(mode):
    """break, then asyncio.run() ends at once while the coroutines are still cancelling on the
    workers: their outcomes go to a closed loop and are dropped, with no warning or error (the
    autouse checks), and every coroutine still ends."""

    async def slow_cleanup(i: int) -> int:
        if i == 0:
            return 0
        try:
            return await forever(i)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # still cancelling when the caller's loop is gone
            raise

    async def main(tracker: Tracker) -> None:
        func = tracker.wrap(slow_cleanup)
        async for _ in threaded_map(func, range(6), num_threads=2, mode=mode, max_in_flight=6):
            await tracker.wait_for(lambda: len(tracker.started) == 6)
            break

    for _ in range(3):
        tracker = Tracker()
        asyncio.run(main(tracker))
        asyncio.run(tracker.wait_for(lambda: tracker.started == tracker.ended))
        assert tracker.cancelled == {1, 2, 3, 4, 5}


async def test_cancelling_the_consumer_cancels_what_is_in_flight_and_waits(mode):
    tracker = Tracker()
    waiting = asyncio.Event()

    async def consume(it: ThreadedMap[Any]) -> None:
        waiting.set()
        async for _ in it:
            pass

    task = asyncio.create_task(consume(await start_four_forever(mode, tracker)))
    await waiting.wait()
    await asyncio.sleep(0)  # the consumer is now waiting in __anext__
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tracker.cancelled == {1, 2, 3, 4}
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_timeout_around_the_iteration_cancels_and_waits(mode):
    tracker = Tracker()
    it = await start_four_forever(mode, tracker)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            async for _ in it:
                pass
    assert tracker.cancelled == {1, 2, 3, 4}
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_a_consumer_cancelled_again_keeps_waiting_for_the_cancellations(mode):
    tracker = Tracker()
    release = threading.Event()
    cleaning: set[int] = set()

    async def slow_to_cancel(i: int) -> int:
        if i == 0:
            return 0
        try:
            return await forever(i)
        except asyncio.CancelledError:
            with tracker.lock:
                cleaning.add(i)
            while not release.is_set():  # cleanup that takes its time
                await asyncio.sleep(0.001)
            raise

    it = threaded_map(tracker.wrap(slow_to_cancel), range(3), num_threads=2, mode=mode)
    assert await anext(it) == 0
    await tracker.wait_for(lambda: len(tracker.started) == 3)
    task = asyncio.create_task(anext(it))
    await asyncio.sleep(0)
    task.cancel()
    await tracker.wait_for(lambda: cleaning == {1, 2})
    task.cancel()  # again, while it waits for the cleanups
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tracker.started_have_ended() and tracker.all_closed()


async def test_leaving_early_cancels_a_pending_fetch_of_an_async_source(mode):
    tracker = Tracker()
    fetch_cancelled = False

    async def items() -> AsyncIterator[int]:
        nonlocal fetch_cancelled
        yield 0
        try:
            await asyncio.sleep(3600)  # the next item never comes
        except asyncio.CancelledError:
            fetch_cancelled = True
            raise
        yield 1

    async with threaded_map(tracker.wrap(double), items(), mode=mode) as it:
        async for r in it:
            assert r == 0
            break
    assert fetch_cancelled
    assert only_this_task_is_left()
    assert tracker.all_closed()


async def test_aclose_before_iterating_and_twice_is_harmless():
    it = threaded_map(double, range(3))
    await it.aclose()
    await it.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(it)


async def test_concurrent_anext_raises_runtime_error(mode):
    it = threaded_map(forever, range(3), mode=mode)
    first = asyncio.create_task(anext(it))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await anext(it)
    with pytest.raises(RuntimeError, match="already running"):
        await it.aclose()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


# ---- against a sequential oracle ----------------------------------------------------------------


class CustomError(Exception):
    pass


@dataclass(frozen=True)
class Spec:
    yields: int
    sleep: float
    value: int
    raises: type[Exception] | None

    async def run(self) -> int:
        for _ in range(self.yields):
            await asyncio.sleep(0)
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.raises is not None:
            raise self.raises(self.value)
        return self.value


specs_st = st.lists(
    st.builds(
        Spec,
        yields=st.integers(0, 3),
        sleep=st.sampled_from([0.0, 0.0, 0.001, 0.003]),
        value=st.integers(-1000, 1000),
        raises=st.one_of(st.none(), st.none(), st.sampled_from([ValueError, KeyError, CustomError])),
    ),
    max_size=16,
)


def outcome(value: Any) -> tuple[Any, ...]:
    if isinstance(value, BaseException):
        return ("raised", type(value), value.args)
    return ("returned", value)


async def sequential_oracle(specs: list[Spec]) -> list[tuple[Any, ...]]:
    """What ``for s in specs: await s.run()`` gives, in one loop, one at a time."""
    out = []
    for s in specs:
        try:
            out.append(outcome(await s.run()))
        except Exception as exc:
            out.append(outcome(exc))
    return out


def sorted_outcomes(outcomes: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(outcomes, key=repr)


@given(
    specs=specs_st,
    num_threads=st.integers(1, 3),
    max_in_flight=st.one_of(st.none(), st.integers(1, 5)),
    mode=st.sampled_from(list(SchedulingMode)),
    ordered=st.booleans(),
    async_source=st.booleans(),
    return_exceptions=st.booleans(),
)
def test_results_match_a_sequential_oracle(
    specs, num_threads, max_in_flight, mode, ordered, async_source, return_exceptions
):
    async def subject() -> tuple[list[tuple[Any, ...]], BaseException | None]:
        items: Any = aiter_of(specs) if async_source else specs
        got: list[tuple[Any, ...]] = []
        try:
            async for r in threaded_map(
                Spec.run, items, num_threads=num_threads, mode=mode, max_in_flight=max_in_flight,
                ordered=ordered, return_exceptions=return_exceptions,
            ):
                got.append(outcome(r))
        except Exception as exc:
            return got, exc
        return got, None

    expected = asyncio.run(sequential_oracle(specs))
    got, raised = asyncio.run(asyncio.wait_for(subject(), 60))
    failures = [o for o in expected if o[0] == "raised"]
    if return_exceptions or not failures:
        assert raised is None
        assert got == expected if ordered else sorted_outcomes(got) == sorted_outcomes(expected)
        return
    # The first failure to happen is raised; what was yielded before it are results only.
    assert raised is not None and outcome(raised) in failures
    if ordered:
        assert got == expected[: len(got)]
    else:
        remaining = collections.Counter(o for o in expected if o[0] == "returned")
        remaining.subtract(got)
        assert min(remaining.values(), default=0) >= 0


# ---- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 3, "double"])
def test_func_must_be_callable(bad):
    with pytest.raises(TypeError, match="func must be callable"):
        threaded_map(bad, [1])


@pytest.mark.parametrize("bad", [None, 3, object()])
def test_items_must_be_iterable(bad):
    with pytest.raises(TypeError, match="items must be an iterable or an async iterable"):
        threaded_map(double, bad)


@pytest.mark.parametrize(("bad", "exc"), [(0, ValueError), (-2, ValueError), (2.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_max_in_flight_must_be_a_positive_int(bad, exc):
    with pytest.raises(exc, match="max_in_flight"):
        threaded_map(double, [1], max_in_flight=bad)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"num_threads": 0}, ValueError, "num_threads must be at least 1"),
    ({"num_threads": "2"}, TypeError, "num_threads must be an int"),
    ({"mode": "QUEUE"}, TypeError, "mode must be a SchedulingMode"),
    ({"pool": object()}, TypeError, "pool must be a thrasks.WorkerPool"),
])
def test_other_arguments_are_checked_at_call_time(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        threaded_map(double, [1], **kwargs)


def test_a_shut_down_pool_is_refused():
    pool = WorkerPool()
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        threaded_map(double, [1], pool=pool)


def test_calling_threaded_map_starts_nothing():
    tracker = Tracker()
    it = threaded_map(tracker.wrap(double), iter(range(3)))
    assert isinstance(it, ThreadedMap) and isinstance(it, collections.abc.AsyncIterator)
    assert tracker.created == 0
    assert "not started" in repr(it)
