"""Cancellation in every direction: a failing sibling, the body raising, the caller being cancelled
(asyncio.timeout, wait_for, Task.cancel), future.cancel(), and gather's outer future.

Each test records on the WORKER side that the coroutine saw CancelledError (threading.Event: the
coroutine runs on another thread), and the hang guards only turn a hang into a failure: no test
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading

import pytest

from thrasks import ThreadedTaskGroup, WorkerPool, threaded_gather

# seconds; "the group exits promptly" == well before the 60 s sleeps it cancels. Stretched on slow
# interpreters (see conftest.py), but never to where a sleep could end by itself.
GUARD = min(10 * float(os.environ.get("THRASKS_TIMEOUT_SCALE", "1")), 40)


class Sleeper:
    """A coroutine that sleeps 60 s on its worker and records what happened to it."""

    def __init__(self):
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.finished_cleanup = threading.Event()
        self.cancel_args = None

    async def run(self):
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError as e:
            self.cancel_args = e.args
            self.cancelled.set()
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            self.finished_cleanup.set()
            raise
        return "slept"


async def wait_event(event: threading.Event, timeout=GUARD) -> bool:
    """Wait for a threading.Event without blocking the caller's loop."""
    return await asyncio.to_thread(event.wait, timeout)


async def fail_after_start(sleeper: Sleeper, exc: BaseException):
    """Raise once `sleeper` is running (so that it is cancelled, not prevented from starting)."""
    while not sleeper.started.is_set():
        await asyncio.sleep(0.001)
    raise exc


# ---- sibling failure ----------------------------------------------------------------------------


async def test_failing_task_cancels_its_running_siblings(mode):
    sleepers = [Sleeper() for _ in range(3)]
    with pytest.raises(ValueError):
        async with asyncio.timeout(GUARD):
            async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                for s in sleepers:
                    tg.create_task(s.run())
                tg.create_task(fail_after_start(sleepers[-1], ValueError("boom")))
    assert all(s.cancelled.is_set() for s in sleepers if s.started.is_set())
    assert sleepers[-1].cancelled.is_set()


async def test_futures_of_cancelled_siblings_are_cancelled(mode):
    sleeper = Sleeper()
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            sibling = tg.create_task(sleeper.run())
            tg.create_task(fail_after_start(sleeper, ValueError()))
    assert sibling.cancelled()


async def test_group_waits_for_cancelled_siblings_to_finish_cleanup(mode):
    sleeper = Sleeper()
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(sleeper.run())
            tg.create_task(fail_after_start(sleeper, ValueError()))
    assert sleeper.finished_cleanup.is_set()


async def test_failure_cancels_siblings_spawned_from_workers(mode):
    sleeper = Sleeper()
    with pytest.raises(KeyError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:

            async def spawn_then_fail():
                tg.create_task(sleeper.run())
                while not sleeper.started.is_set():
                    await asyncio.sleep(0.001)
                raise KeyError("k")

            tg.create_task(spawn_then_fail())
    assert sleeper.cancelled.is_set()


async def test_failure_cancels_tasks_that_have_not_started_yet(mode):
    """One worker, busy failing: the tasks queued behind it never run their body."""
    ran = []

    async def queued(i):
        ran.append(i)

    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
            tg.create_task(fail_now(ValueError()))
            futures = [tg.create_task(queued(i)) for i in range(5)]
    # whatever ran did so before the failure was known; everything else was cancelled, not lost
    assert all(f.done() for f in futures)
    assert all(f.cancelled() for i, f in enumerate(futures) if i not in ran)


async def fail_now(exc):
    raise exc


async def test_sibling_failure_interrupts_the_body(mode):
    body_cancelled = False
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail_now(ValueError()))
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                body_cancelled = True
                raise
    assert body_cancelled


async def test_task_swallowing_the_sibling_cancellation_returns_its_value(mode):
    """Like asyncio.Task: a coroutine that catches CancelledError and returns completes normally."""
    started = threading.Event()

    async def stubborn():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"

    async def failing():
        while not started.is_set():
            await asyncio.sleep(0.001)
        raise ValueError

    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            fut = tg.create_task(stubborn())
            tg.create_task(failing())
    assert fut.result() == "swallowed"


# ---- the body raising ---------------------------------------------------------------------------


async def test_body_raising_cancels_the_tasks(mode):
    sleepers = [Sleeper() for _ in range(3)]
    with pytest.raises(RuntimeError):
        async with asyncio.timeout(GUARD):
            async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                for s in sleepers:
                    tg.create_task(s.run())
                for s in sleepers:
                    await wait_event(s.started)
                raise RuntimeError("body")
    assert all(s.cancelled.is_set() for s in sleepers)


async def test_body_raising_before_tasks_started_still_leaves_nothing_running(mode):
    sleepers = [Sleeper() for _ in range(4)]
    with pytest.raises(RuntimeError):
        async with asyncio.timeout(GUARD):
            async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                futures = [tg.create_task(s.run()) for s in sleepers]
                raise RuntimeError("body")
    assert all(f.cancelled() for f in futures)
    assert all(s.cancelled.is_set() for s in sleepers if s.started.is_set())


# ---- the caller being cancelled -----------------------------------------------------------------


async def test_outer_timeout_cancels_the_tasks_and_the_group_exits(mode):
    sleeper = Sleeper()
    async with asyncio.timeout(GUARD):  # hang guard: the group must not wait for the 60 s sleep
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:
                async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                    fut = tg.create_task(sleeper.run())
                    # started, so cancellation must reach it; the deadline runs from here, as a task
                    # cancelled before it starts never runs (asyncio's rule), however slow the host
                    assert await wait_event(sleeper.started)
                    deadline.reschedule(asyncio.get_running_loop().time() + 0.05)
                    await asyncio.sleep(60)
    assert sleeper.started.is_set()
    assert sleeper.cancelled.is_set()
    assert fut.cancelled()


async def test_outer_timeout_while_waiting_at_exit_cancels_the_tasks(mode):
    """The timeout fires while __aexit__ waits for the tasks (the body already finished)."""
    sleepers = [Sleeper() for _ in range(3)]
    async with asyncio.timeout(GUARD):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as deadline:
                async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                    for s in sleepers:
                        tg.create_task(s.run())
                    # all three running (so the cancel must reach each); the deadline falls while
                    # __aexit__ waits for them, however slow the host was to start them
                    for s in sleepers:
                        assert await wait_event(s.started)
                    deadline.reschedule(asyncio.get_running_loop().time() + 0.05)
    assert all(s.cancelled.is_set() for s in sleepers)


async def test_wait_for_cancels_the_tasks(mode):
    sleeper = Sleeper()

    async def uses_a_group():
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(sleeper.run())
            # Wait until the worker runs it: a task cancelled before it starts never runs (as in
            # asyncio), which on a loaded machine would make this test about scheduling delays.
            await wait_event(sleeper.started)
            await asyncio.sleep(60)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(uses_a_group(), GUARD / 5)
    assert sleeper.started.is_set()
    assert sleeper.cancelled.is_set()


async def test_cancelling_the_caller_task_cancels_the_tasks_and_propagates(mode):
    sleeper = Sleeper()

    async def uses_a_group():
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(sleeper.run())

    caller = asyncio.create_task(uses_a_group())
    await wait_event(sleeper.started)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sleeper.cancelled.is_set()


async def test_caller_cancellation_waits_for_the_tasks_to_finish_cancelling(mode):
    sleeper = Sleeper()
    cleanup_done_when_cancel_arrived = []

    async def uses_a_group():
        try:
            async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                tg.create_task(sleeper.run())
        except asyncio.CancelledError:
            cleanup_done_when_cancel_arrived.append(sleeper.finished_cleanup.is_set())
            raise

    caller = asyncio.create_task(uses_a_group())
    await wait_event(sleeper.started)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cleanup_done_when_cancel_arrived == [True]


async def test_caller_cancellation_message_is_kept(mode):
    sleeper = Sleeper()

    async def uses_a_group():
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(sleeper.run())

    caller = asyncio.create_task(uses_a_group())
    await wait_event(sleeper.started)
    caller.cancel("stop now")
    with pytest.raises(asyncio.CancelledError, match="stop now"):
        await caller


async def test_asyncio_taskgroup_oracle_for_caller_cancellation():
    """What the tests above compare with: asyncio.TaskGroup cancels its children and re-raises."""
    cancelled = asyncio.Event()

    async def child():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def uses_a_group():
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())

    caller = asyncio.create_task(uses_a_group())
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled.is_set()


# ---- future.cancel() ----------------------------------------------------------------------------


async def test_future_cancel_cancels_the_running_coroutine(mode):
    sleeper = Sleeper()
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(sleeper.run())
        await wait_event(sleeper.started)
        assert fut.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await fut
    assert sleeper.cancelled.is_set()
    assert fut.cancelled()


async def test_future_cancel_does_not_fail_the_group(mode):
    """A cancelled child is not an error (asyncio.TaskGroup ignores cancelled children)."""
    sleeper = Sleeper()
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(sleeper.run())
        other = tg.create_task(asyncio.sleep(0.01, result="other"))
        await wait_event(sleeper.started)
        fut.cancel()
    assert fut.cancelled()
    assert other.result() == "other"


async def test_future_cancel_message_reaches_the_coroutine(mode):
    sleeper = Sleeper()
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(sleeper.run())
        await wait_event(sleeper.started)
        fut.cancel("because")
    assert sleeper.cancel_args == ("because",)


async def test_future_is_cancelled_only_once_the_coroutine_finished_cancelling(mode):
    """Like Task.cancel(): cancel() is a request; the future is done when the coroutine is."""
    in_cleanup = threading.Event()
    release = threading.Event()

    async def slow_to_cancel():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            in_cleanup.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
            raise

    started = threading.Event()

    async def run():
        started.set()
        await slow_to_cancel()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(run())
        await wait_event(started)
        fut.cancel()
        assert await wait_event(in_cleanup)
        await asyncio.sleep(0.01)
        assert not fut.done()
        release.set()
    assert fut.cancelled()


async def test_future_cancel_before_the_task_started(mode):
    """One worker, blocked: the second task is cancelled while it waits; its body never runs."""
    release = threading.Event()
    ran = threading.Event()

    async def blocker():
        release.wait(GUARD)

    async def never():
        ran.set()

    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        tg.create_task(blocker())
        waiting = tg.create_task(never())
        assert waiting.cancel() is True
        release.set()
    assert waiting.cancelled()
    assert not ran.is_set()


async def test_future_cancel_right_after_create_task(mode):
    async def body():
        await asyncio.sleep(60)

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(body())
        fut.cancel()
    assert fut.cancelled()


async def test_coroutine_cancelled_before_start_is_closed_without_warning(mode):
    """The rejected coroutine is closed by the runtime (autouse check: no never-awaited warning)."""
    release = threading.Event()

    async def blocker():
        release.wait(GUARD)

    async def never():
        await asyncio.sleep(60)

    coro = never()
    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        tg.create_task(blocker())
        fut = tg.create_task(coro)
        fut.cancel()
        release.set()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_future_cancel_of_a_swallowing_coroutine_gives_its_result(mode):
    started = threading.Event()

    async def stubborn():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed"

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(stubborn())
        await wait_event(started)
        fut.cancel()
    assert not fut.cancelled()
    assert fut.result() == "swallowed"


async def test_future_cancel_after_completion_returns_false(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(asyncio.sleep(0, result=1))
    assert fut.cancel() is False
    assert fut.result() == 1


async def test_future_cancel_from_a_worker_thread(mode):
    """A task cancels a sibling's future (thread-safe cancel)."""
    sleeper = Sleeper()
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        target = tg.create_task(sleeper.run())

        async def canceller():
            while not sleeper.started.is_set():
                await asyncio.sleep(0.001)
            target.get_loop().call_soon_threadsafe(target.cancel)

        tg.create_task(canceller())
    assert target.cancelled()
    assert sleeper.cancelled.is_set()


# ---- threaded_gather ----------------------------------------------------------------------------


async def test_cancelling_gather_cancels_all_children(mode):
    sleepers = [Sleeper() for _ in range(3)]
    gathering = asyncio.ensure_future(threaded_gather(*(s.run() for s in sleepers), num_threads=3, mode=mode))
    for s in sleepers:
        await wait_event(s.started)
    gathering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(gathering, GUARD)
    # asyncio.gather's rule: the outer future settles as soon as the FIRST child ends cancelled,
    # so a child on a slower worker (a loaded host, ThreadSanitizer) may still be on its way.
    # Each must get the cancel; without it a sleeper sleeps 60 s, past the guard.
    for s in sleepers:
        assert await wait_event(s.cancelled)


async def test_timeout_around_gather_cancels_all_children(mode):
    sleepers = [Sleeper() for _ in range(3)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await threaded_gather(*(s.run() for s in sleepers), num_threads=2, mode=mode)
    for s in sleepers:
        if s.started.is_set():
            assert await wait_event(s.cancelled)


async def test_wait_for_around_gather_cancels_all_children(mode):
    sleepers = [Sleeper() for _ in range(2)]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(threaded_gather(*(s.run() for s in sleepers), num_threads=2, mode=mode), 0.05)
    for s in sleepers:
        if s.started.is_set():
            assert await wait_event(s.cancelled)


async def test_gather_child_raising_cancelled_error_cancels_the_gather(mode):
    """asyncio.gather without return_exceptions: a cancelled child cancels the outer future."""

    async def cancels_itself():
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(threaded_gather(cancels_itself(), asyncio.sleep(0.01), mode=mode), GUARD)


async def test_gather_child_cancellation_with_return_exceptions_is_a_result(mode):
    async def cancels_itself():
        raise asyncio.CancelledError

    results = await threaded_gather(
        cancels_itself(), asyncio.sleep(0, result=2), return_exceptions=True, mode=mode
    )
    assert isinstance(results[0], asyncio.CancelledError) and results[1] == 2


# ---- CancelledError vs KeyboardInterrupt / SystemExit -------------------------------------------


async def test_task_raising_cancelled_error_is_cancelled_not_a_failure(mode):
    """As in asyncio.TaskGroup: a child that ends cancelled does not abort the group."""

    async def cancels_itself():
        raise asyncio.CancelledError

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        cancelled = tg.create_task(cancels_itself())
        other = tg.create_task(asyncio.sleep(0.01, result="ok"))
    assert cancelled.cancelled()
    assert other.result() == "ok"


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate_out_of_the_group(mode, exc_type):
    """asyncio.TaskGroup lets them escape asyncio.run(); so does ThreadedTaskGroup."""
    sleeper = Sleeper()

    async def main():
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(sleeper.run())
            tg.create_task(fail_after_start(sleeper, exc_type()))
            await asyncio.sleep(60)

    with pytest.raises(exc_type):
        asyncio.run(asyncio.wait_for(main(), GUARD))
    assert sleeper.cancelled.wait(GUARD)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_wins_over_other_failures(mode, exc_type):
    """asyncio.TaskGroup raises the base error itself, not an ExceptionGroup."""
    failing = threading.Event()

    async def fails():
        await asyncio.sleep(0)
        failing.set()
        raise ValueError

    async def interrupts():
        # blocks its worker (so the group's cancellation cannot interrupt it) until the other has failed
        failing.wait(GUARD)
        raise exc_type()

    async def main():
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(interrupts())
            tg.create_task(fails())

    with pytest.raises(exc_type):
        asyncio.run(asyncio.wait_for(main(), GUARD))


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_worker_survives_a_keyboard_interrupt_in_a_task(exc_type):
    pool = WorkerPool()

    async def raise_it():
        raise exc_type()

    async def broken():
        async with ThreadedTaskGroup(num_threads=1, pool=pool) as tg:
            tg.create_task(raise_it())

    async def works():
        return await threaded_gather(asyncio.sleep(0, result="alive"), num_threads=1, pool=pool)

    try:
        with pytest.raises(exc_type):
            asyncio.run(broken())
        assert asyncio.run(works()) == ["alive"]
    finally:
        pool.shutdown(wait=True)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_propagates_out_of_gather(exc_type):
    async def raise_it():
        await asyncio.sleep(0)
        raise exc_type()

    async def main():
        return await threaded_gather(raise_it(), asyncio.sleep(0.01), num_threads=2)

    with pytest.raises(exc_type):
        asyncio.run(asyncio.wait_for(main(), GUARD))
