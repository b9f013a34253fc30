"""Failures and misuse: the seed's exception rule and every error message, in asyncio's voice.

Each misuse raises a specific error and leaves nothing behind: the rejected coroutine is closed
(no "coroutine ... was never awaited" RuntimeWarning) and never runs.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import threading
import time
import warnings

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather


async def ok(x=None):
    await asyncio.sleep(0)
    return x


async def fail(exc):
    await asyncio.sleep(0)
    raise exc


class Probe:
    """A coroutine that records whether its body ever ran."""

    def __init__(self):
        self.ran = False

    async def run(self):
        self.ran = True


def assert_closed_and_never_ran(coro, probe):
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert not probe.ran


# ---- the seed's exception rule ------------------------------------------------------------------


async def test_single_failure_is_reraised_as_itself(mode):
    boom = ValueError("Something went wrong")
    with pytest.raises(ValueError) as excinfo:
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail(boom))
            tg.create_task(ok())
    assert excinfo.value is boom


async def test_single_failure_is_not_wrapped_in_an_exception_group(mode):
    try:
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail(KeyError("k")))
    except BaseException as e:  # noqa: BLE001 - the test is about what exactly is raised
        caught = e
    assert type(caught) is KeyError


async def test_several_failures_raise_an_exception_group_of_them(mode):
    errors = [ValueError("a"), TypeError("b"), KeyError("c")]
    started = 0
    lock = threading.Lock()

    async def fail_when_all_started(exc):
        nonlocal started
        with lock:
            started += 1
        # every failing task waits (blocking its worker) until all three run, so that none of them
        # can be cancelled by the first failure before it raises
        deadline = time.monotonic() + 20  # hang guard only
        while time.monotonic() < deadline:
            with lock:
                if started == 3:
                    break
            time.sleep(0.001)
        raise exc

    with pytest.raises(ExceptionGroup) as excinfo:
        async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
            for exc in errors:
                tg.create_task(fail_when_all_started(exc))
    eg = excinfo.value
    assert sorted(map(id, eg.exceptions)) == sorted(map(id, errors))
    assert re.match(r"unhandled errors in a (Threaded)?TaskGroup", str(eg))  # asyncio's voice


async def test_failed_future_holds_its_exception(mode):
    boom = ValueError("x")
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            fut = tg.create_task(fail(boom))
    assert fut.done() and fut.exception() is boom
    with pytest.raises(ValueError):
        await fut


async def test_body_error_is_reraised_as_itself(mode):
    """The seed rule with one error: the body's own exception comes out unwrapped."""
    boom = RuntimeError("body")
    with pytest.raises(RuntimeError) as excinfo:
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(ok())
            raise boom
    assert excinfo.value is boom


async def test_group_exit_after_failure_lets_the_caller_continue(mode):
    """Like asyncio.TaskGroup: the group cancels its parent task to interrupt the body, and
    un-cancels it on exit, so the caller can catch the error and go on awaiting."""
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail(ValueError()))
            await asyncio.sleep(30)  # interrupted by the failure
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.001)  # not cancelled any more
    assert await ok("still alive") == "still alive"


async def test_asyncio_taskgroup_oracle_for_caller_continuing():
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(fail(ValueError()))
            await asyncio.sleep(30)
    assert asyncio.current_task().cancelling() == 0


async def test_pool_still_works_after_a_failed_group(mode):
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail(ValueError()))
            for _ in range(3):
                tg.create_task(asyncio.sleep(30))
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(ok(5))
    assert fut.result() == 5


# ---- create_task misuse -------------------------------------------------------------------------


async def test_create_task_before_entering_raises_runtime_error():
    group = ThreadedTaskGroup(num_threads=2)
    probe = Probe()
    coro = probe.run()
    with pytest.raises(RuntimeError, match="has not been entered"):
        group.create_task(coro)
    assert_closed_and_never_ran(coro, probe)


async def test_create_task_after_exit_raises_runtime_error(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        tg.create_task(ok())
    probe = Probe()
    coro = probe.run()
    with pytest.raises(RuntimeError, match="is finished"):
        tg.create_task(coro)
    assert_closed_and_never_ran(coro, probe)


async def test_create_task_while_shutting_down_raises_runtime_error(mode):
    probe = Probe()
    coro = probe.run()
    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            tg.create_task(fail(ValueError()))
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                with pytest.raises(RuntimeError, match="is shutting down"):
                    tg.create_task(coro)
                raise
    assert_closed_and_never_ran(coro, probe)


async def test_create_task_from_a_sibling_while_shutting_down_raises(mode):
    outcome = []

    async def failing():
        await asyncio.sleep(0.01)
        raise ValueError

    with pytest.raises(ValueError):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:

            async def sibling():
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    probe = Probe()
                    coro = probe.run()
                    try:
                        tg.create_task(coro)
                    except RuntimeError as e:
                        outcome.append((str(e), inspect.getcoroutinestate(coro), probe.ran))
                    raise

            tg.create_task(sibling())
            tg.create_task(failing())
    assert len(outcome) == 1
    message, state, ran = outcome[0]
    assert "is shutting down" in message
    assert state == inspect.CORO_CLOSED and not ran


async def test_entering_twice_raises_runtime_error():
    async with ThreadedTaskGroup(num_threads=2) as tg:
        with pytest.raises(RuntimeError, match="has already been entered"):
            async with tg:
                pass


async def test_entering_again_after_exit_raises_runtime_error():
    group = ThreadedTaskGroup(num_threads=2)
    async with group:
        pass
    with pytest.raises(RuntimeError, match="has already been entered"):
        async with group:
            pass


@pytest.mark.parametrize("not_a_coroutine", [42, None, "text", ok], ids=["int", "None", "str", "function"])
async def test_create_task_with_a_non_coroutine_raises_type_error(mode, not_a_coroutine):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        with pytest.raises(TypeError, match="a coroutine was expected"):
            tg.create_task(not_a_coroutine)


async def test_type_error_message_names_the_object_like_asyncio():
    async with ThreadedTaskGroup(num_threads=1) as tg:
        with pytest.raises(TypeError, match=r"a coroutine was expected, got 42"):
            tg.create_task(42)


async def test_group_still_works_after_a_rejected_non_coroutine(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        with pytest.raises(TypeError):
            tg.create_task(42)
        fut = tg.create_task(ok("fine"))
    assert fut.result() == "fine"


async def test_rejected_coroutines_leave_no_never_awaited_warning(mode):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = ThreadedTaskGroup(num_threads=2, mode=mode)
        with pytest.raises(RuntimeError):
            group.create_task(ok())
        async with group as tg:
            tg.create_task(ok())
        with pytest.raises(RuntimeError):
            tg.create_task(ok())
        with pytest.raises(ValueError):
            await threaded_gather(ok(), ok(), num_threads=0)
        with pytest.raises(TypeError):
            await threaded_gather(ok(), mode="queue")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


# ---- constructor / argument validation ----------------------------------------------------------


@pytest.mark.parametrize("bad, type_name", [(2.0, "float"), (True, "bool"), ("4", "str"), (None, "NoneType")])
def test_group_num_threads_of_wrong_type_raises_type_error(bad, type_name):
    with pytest.raises(TypeError, match=rf"num_threads must be an int.*{type_name}"):
        ThreadedTaskGroup(num_threads=bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_group_num_threads_below_one_raises_value_error(bad):
    with pytest.raises(ValueError, match=rf"num_threads must be at least 1, got {bad}"):
        ThreadedTaskGroup(num_threads=bad)


@pytest.mark.parametrize("bad", ["queue", "ROUND_ROBIN", 0, None])
def test_group_mode_of_wrong_type_raises_type_error(bad):
    with pytest.raises(TypeError, match="mode must be a SchedulingMode"):
        ThreadedTaskGroup(num_threads=2, mode=bad)


def test_group_mode_error_message_shows_the_value():
    with pytest.raises(TypeError, match=r"got 'queue'"):
        ThreadedTaskGroup(mode="queue")


def test_group_num_threads_is_keyword_or_positional_and_mode_keyword_only():
    ThreadedTaskGroup(2)
    with pytest.raises(TypeError):
        ThreadedTaskGroup(2, SchedulingMode.QUEUE)


@pytest.mark.parametrize("bad, type_name", [(2.5, "float"), (False, "bool")])
async def test_gather_num_threads_of_wrong_type_raises_type_error(bad, type_name):
    probe = Probe()
    coro = probe.run()
    with pytest.raises(TypeError, match=rf"num_threads must be an int.*{type_name}"):
        await threaded_gather(coro, num_threads=bad)
    assert_closed_and_never_ran(coro, probe)


@pytest.mark.parametrize("bad", [0, -3])
async def test_gather_num_threads_below_one_raises_value_error(bad):
    probe = Probe()
    coro = probe.run()
    with pytest.raises(ValueError, match=rf"num_threads must be at least 1, got {bad}"):
        await threaded_gather(coro, num_threads=bad)
    assert_closed_and_never_ran(coro, probe)


async def test_gather_mode_of_wrong_type_raises_type_error():
    probe = Probe()
    coro = probe.run()
    with pytest.raises(TypeError, match="mode must be a SchedulingMode"):
        await threaded_gather(coro, mode="queue")
    assert_closed_and_never_ran(coro, probe)


async def test_gather_validation_runs_none_of_the_coroutines():
    probes = [Probe() for _ in range(5)]
    coros = [p.run() for p in probes]
    with pytest.raises(ValueError):
        await threaded_gather(*coros, num_threads=0)
    await asyncio.sleep(0.05)
    for coro, probe in zip(coros, probes):
        assert_closed_and_never_ran(coro, probe)


async def test_gather_validation_happens_even_without_arguments():
    with pytest.raises(ValueError):
        await threaded_gather(num_threads=0)


async def test_gather_of_a_non_awaitable_raises_type_error():
    with pytest.raises(TypeError):
        await threaded_gather(42)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_pool_num_threads_is_validated(bad, exc):
    with pytest.raises(exc, match="num_threads"):
        WorkerPool(bad)
