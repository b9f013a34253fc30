"""threaded_gather: asyncio.gather, with the coroutines run on worker threads.

Outer cancellation is in test_cancellation.py, bad arguments in test_errors.py, random mixes
against asyncio.gather in test_properties.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from thrasks import threaded_gather

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def echo(x, delay=0.0):
    await asyncio.sleep(delay)
    return x


async def fail(exc):
    await asyncio.sleep(0)
    raise exc


async def test_results_keep_input_order(mode):
    # later inputs finish first
    coros = [echo(i, delay=0.002 * (10 - i)) for i in range(10)]
    assert await threaded_gather(*coros, num_threads=3, mode=mode) == list(range(10))


async def test_returns_a_list(mode):
    result = await threaded_gather(echo(1), echo(2), num_threads=2, mode=mode)
    assert type(result) is list


async def test_no_arguments_gives_an_empty_list():
    assert await threaded_gather() == []


async def test_one_thread_runs_everything(mode):
    assert await threaded_gather(*(echo(i) for i in range(8)), num_threads=1, mode=mode) == list(range(8))


async def test_more_threads_than_coroutines(mode):
    assert await threaded_gather(echo("a"), echo("b"), num_threads=12, mode=mode) == ["a", "b"]


async def test_default_arguments_work():
    assert await threaded_gather(echo(1), echo(2), echo(3)) == [1, 2, 3]


async def test_coroutines_run_on_worker_threads(mode):
    async def where():
        return threading.get_ident()

    idents = await threaded_gather(*(where() for _ in range(6)), num_threads=2, mode=mode)
    assert threading.get_ident() not in idents


async def test_coroutines_run_in_a_copy_of_the_callers_context(mode):
    async def read_then_write():
        seen = request_id.get()
        request_id.set("changed")
        return seen

    token = request_id.set("from-caller")
    try:
        assert await threaded_gather(read_then_write(), read_then_write(), mode=mode) == [
            "from-caller",
            "from-caller",
        ]
        assert request_id.get() == "from-caller"
    finally:
        request_id.reset(token)


async def test_return_exceptions_puts_exceptions_in_place(mode):
    boom = ValueError("boom")
    other = KeyError("k")
    results = await threaded_gather(
        echo(1), fail(boom), echo(3), fail(other), num_threads=2, return_exceptions=True, mode=mode
    )
    assert results[0] == 1 and results[2] == 3
    assert results[1] is boom and results[3] is other


async def test_first_exception_propagates_without_return_exceptions(mode):
    boom = ValueError("boom")
    with pytest.raises(ValueError) as excinfo:
        await threaded_gather(echo(1), fail(boom), echo(3), num_threads=2, mode=mode)
    assert excinfo.value is boom


async def test_first_exception_does_not_cancel_the_other_coroutines(mode):
    """Like asyncio.gather: the error is raised at once, the others keep running to the end."""
    release = threading.Event()
    finished = threading.Event()
    cancelled = threading.Event()

    async def keeps_running():
        try:
            while not release.is_set():
                await asyncio.sleep(0.001)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finished.set()
        return "done"

    with pytest.raises(ZeroDivisionError):
        await threaded_gather(keeps_running(), fail(ZeroDivisionError()), num_threads=2, mode=mode)
    release.set()
    assert await asyncio.to_thread(finished.wait, 20)
    assert not cancelled.is_set()


async def test_asyncio_gather_oracle_for_first_exception():
    """The oracle of the test above: asyncio.gather does not cancel the others either."""
    finished = asyncio.Event()

    async def keeps_running():
        await asyncio.sleep(0.01)
        finished.set()

    with pytest.raises(ZeroDivisionError):
        await asyncio.gather(keeps_running(), fail(ZeroDivisionError()))
    await asyncio.wait_for(finished.wait(), 20)


async def test_exceptions_of_the_others_are_not_logged_as_never_retrieved(mode):
    """Several coroutines fail; only the first is raised. asyncio.gather retrieves the others, so
    nothing is logged (the autouse check fails the test if asyncio logs an error)."""
    with pytest.raises(ValueError):
        await threaded_gather(
            fail(ValueError(1)), fail(ValueError(2)), fail(ValueError(3)), num_threads=3, mode=mode
        )
    await asyncio.sleep(0.05)


def test_leaving_the_loop_right_after_gather_raised_logs_nothing(mode):
    """asyncio.run() ends at once after the first error while the others still run on workers:
    their outcomes have nowhere to go, and that must pass silently (autouse check: no asyncio error
    log such as "exception was never retrieved", no exception in a thread)."""
    lock = threading.Lock()
    raised = 0
    both_raised = threading.Event()

    async def later(exc):
        nonlocal raised
        await asyncio.sleep(0.05)
        with lock:
            raised += 1
            if raised == 2:
                both_raised.set()
        raise exc

    async def main():
        with pytest.raises(ValueError):
            await threaded_gather(fail(ValueError()), later(KeyError()), later(RuntimeError()), mode=mode)

    asyncio.run(main())
    assert both_raised.wait(20)
    time.sleep(0.1)  # let the runtime deliver (or drop) those two outcomes before the checks


async def test_existing_tasks_fall_back_to_asyncio_gather():
    t1 = asyncio.create_task(echo("x", 0.01))
    t2 = asyncio.create_task(echo("y"))
    assert await threaded_gather(t1, t2, num_threads=2) == ["x", "y"]


async def test_existing_futures_fall_back_to_asyncio_gather():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "from-future")
    assert await threaded_gather(fut) == ["from-future"]


async def test_done_future_is_accepted():
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(7)
    assert await threaded_gather(fut, echo(8)) == [7, 8]


async def test_existing_tasks_with_return_exceptions_behave_like_asyncio_gather():
    boom = RuntimeError("x")
    t1 = asyncio.create_task(fail(boom))
    t2 = asyncio.create_task(echo(2))
    assert await threaded_gather(t1, t2, return_exceptions=True) == [boom, 2]


async def test_mix_of_coroutines_and_tasks_keeps_input_order(mode):
    task = asyncio.create_task(echo("task", 0.01))
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_later(0.005, fut.set_result, "future")
    results = await threaded_gather(echo("c0"), task, echo("c1", 0.02), fut, echo("c2"), mode=mode)
    assert results == ["c0", "task", "c1", "future", "c2"]


async def test_mix_of_coroutines_and_tasks_runs_the_coroutines_on_workers(mode):
    async def where():
        return threading.get_ident()

    task = asyncio.create_task(where())  # an existing task runs on the caller's loop
    results = await threaded_gather(where(), task, where(), num_threads=2, mode=mode)
    me = threading.get_ident()
    assert results[1] == me
    assert results[0] != me and results[2] != me


async def test_mix_with_return_exceptions(mode):
    boom = ValueError("in task")
    task = asyncio.create_task(fail(boom))
    results = await threaded_gather(echo(1), task, fail(KeyError("k")), return_exceptions=True, mode=mode)
    assert results[0] == 1 and results[1] is boom and isinstance(results[2], KeyError)


async def test_same_coroutine_object_twice_behaves_like_asyncio_gather():
    coro = echo("once")
    expected = await asyncio.gather(*(lambda c: (c, c))(echo("once")))
    assert await threaded_gather(coro, coro) == expected == ["once", "once"]


async def test_gather_can_be_awaited_from_several_tasks_at_once(mode):
    async def one(base):
        return await threaded_gather(*(echo(base + i) for i in range(5)), num_threads=2, mode=mode)

    results = await asyncio.gather(*(one(10 * k) for k in range(6)))
    assert results == [[10 * k + i for i in range(5)] for k in range(6)]


async def test_cpu_bound_coroutines_give_exact_results(mode):
    async def sum_squares(n):
        return sum(i * i for i in range(n))

    ns = [10_000 * k for k in range(1, 9)]
    assert await threaded_gather(*(sum_squares(n) for n in ns), num_threads=4, mode=mode) == [
        (n - 1) * n * (2 * n - 1) // 6 for n in ns
    ]


async def test_many_coroutines(mode):
    n = 2000
    assert await threaded_gather(*(echo(i) for i in range(n)), num_threads=4, mode=mode) == list(range(n))
