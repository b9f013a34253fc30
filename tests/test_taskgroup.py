"""ThreadedTaskGroup: an asyncio.TaskGroup whose tasks run on worker threads, each with its own loop.

Failures, cancellation and error messages have their own files (test_cancellation.py,
test_errors.py); this file covers what a group does when things go right.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import warnings

import pytest

from thrasks import ThreadedTaskGroup, threaded_gather

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def double(x):
    await asyncio.sleep(0)
    return 2 * x


async def test_results_are_available_after_exit(mode):
    async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
        futures = [tg.create_task(double(i)) for i in range(20)]
    assert [f.result() for f in futures] == [2 * i for i in range(20)]


async def test_exit_waits_for_every_task(mode):
    finished = []

    async def slow(i):
        await asyncio.sleep(0.01 * (i % 4))
        finished.append(i)
        return i

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        futures = [tg.create_task(slow(i)) for i in range(12)]
    assert all(f.done() for f in futures)
    assert sorted(finished) == list(range(12))


async def test_empty_group_exits_at_once(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode):
        pass


async def test_default_arguments_make_a_working_group():
    async with ThreadedTaskGroup() as tg:
        fut = tg.create_task(double(21))
    assert fut.result() == 42


async def test_create_task_returns_an_asyncio_future():
    async with ThreadedTaskGroup(num_threads=2) as tg:
        fut = tg.create_task(double(1))
        assert isinstance(fut, asyncio.Future)


async def test_future_is_bound_to_the_callers_loop():
    async with ThreadedTaskGroup(num_threads=2) as tg:
        fut = tg.create_task(double(1))
        assert fut.get_loop() is asyncio.get_running_loop()


async def test_future_can_be_awaited_after_exit(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(double(5))
    assert await fut == 10


async def test_future_can_be_awaited_inside_the_body(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(double(7))
        assert await fut == 14
        second = tg.create_task(double(await fut))
    assert second.result() == 28


async def test_future_supports_done_callbacks_on_the_callers_loop():
    caller_thread = threading.get_ident()
    seen = []
    async with ThreadedTaskGroup(num_threads=2) as tg:
        fut = tg.create_task(double(3))
        fut.add_done_callback(lambda f: seen.append((f.result(), threading.get_ident())))
    await asyncio.sleep(0)
    assert seen == [(6, caller_thread)]


async def test_asyncio_wait_accepts_the_futures():
    async with ThreadedTaskGroup(num_threads=2) as tg:
        futures = [tg.create_task(double(i)) for i in range(4)]
        done, pending = await asyncio.wait(futures)
        assert not pending
    assert sorted(f.result() for f in done) == [0, 2, 4, 6]


async def test_tasks_run_on_other_threads_than_the_caller(mode):
    async def where():
        return threading.get_ident()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        futures = [tg.create_task(where()) for _ in range(6)]
    assert threading.get_ident() not in {f.result() for f in futures}


async def test_tasks_run_in_an_asyncio_task_on_the_workers_own_loop(mode):
    caller_loop = asyncio.get_running_loop()

    async def inspect_runtime():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        return isinstance(task, asyncio.Task), loop is not caller_loop, loop.is_running()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(inspect_runtime())
    assert fut.result() == (True, True, True)


async def test_one_worker_runs_its_tasks_concurrently(mode):
    """A worker is an event loop, not a sequential executor: ten tasks on ONE thread all wait for
    each other; that only finishes if they are interleaved on that thread's loop."""
    arrived = 0
    lock = threading.Lock()

    async def rendezvous():
        nonlocal arrived
        with lock:
            arrived += 1
        while True:
            with lock:
                if arrived == 10:
                    return threading.get_ident()
            await asyncio.sleep(0.001)

    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        futures = [tg.create_task(rendezvous()) for _ in range(10)]
    assert len({f.result() for f in futures}) == 1


async def test_tasks_of_one_group_run_in_parallel_on_different_threads(mode):
    """Two tasks that can only finish together (a two-party barrier) finish: they run at the same
    time on two threads."""
    barrier = threading.Barrier(2, timeout=20)

    async def meet():
        barrier.wait()
        return threading.get_ident()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        a = tg.create_task(meet())
        b = tg.create_task(meet())
    assert a.result() != b.result()


async def test_blocking_task_does_not_block_the_callers_loop(mode):
    """The task blocks its worker thread until the caller's loop, still running, releases it."""
    release = threading.Event()

    async def blocks_its_thread():
        return release.wait(timeout=30)

    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        fut = tg.create_task(blocks_its_thread())
        for _ in range(3):
            await asyncio.sleep(0)  # the caller's loop keeps turning
        release.set()
    assert fut.result() is True


async def test_body_can_keep_awaiting_while_tasks_run(mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        first = tg.create_task(double(1))
        await asyncio.sleep(0.01)
        second = tg.create_task(double(2))
        await asyncio.sleep(0)
    assert (first.result(), second.result()) == (2, 4)


async def test_task_runs_in_a_copy_of_the_callers_context(mode):
    async def read_then_write():
        seen = request_id.get()
        request_id.set("changed-by-task")
        return seen

    token = request_id.set("from-caller")
    try:
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            fut = tg.create_task(read_then_write())
        assert fut.result() == "from-caller"
        assert request_id.get() == "from-caller"  # a copy: the task's change stays in the task
    finally:
        request_id.reset(token)


async def test_context_is_copied_when_create_task_is_called(mode):
    async def read():
        await asyncio.sleep(0)
        return request_id.get()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        token = request_id.set("first")
        first = tg.create_task(read())
        request_id.set("second")
        second = tg.create_task(read())
        request_id.reset(token)
    assert (first.result(), second.result()) == ("first", "second")


async def test_task_sees_the_given_context(mode):
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "from-context-argument")

    async def read():
        return request_id.get()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(read(), context=ctx)
    assert fut.result() == "from-context-argument"
    assert request_id.get() == "unset"


async def test_given_context_is_copied_so_parallel_tasks_can_share_it(mode):
    """Documented difference from asyncio: the task runs in a COPY of context=. One Context
    cannot be entered by two threads at once, so running tasks in the given object itself
    would break (and hang the task) as soon as two parallel tasks share it, which asyncio code
    does freely. The task sees the context's values; its own writes stay in its copy."""
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "shared")

    async def write_then_read(i):
        seen = request_id.get()
        request_id.set(f"written-by-{i}")
        time.sleep(0.01)  # hold the context while the other tasks run in parallel
        await asyncio.sleep(0)
        return seen, request_id.get()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        futs = [tg.create_task(write_then_read(i), context=ctx) for i in range(6)]
    assert [f.result() for f in futs] == [("shared", f"written-by-{i}") for i in range(6)]
    assert ctx[request_id] == "shared"


async def test_name_becomes_the_worker_tasks_name(mode):
    async def my_name():
        return asyncio.current_task().get_name()

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        named = tg.create_task(my_name(), name="fetch-user-42")
        unnamed = tg.create_task(my_name())
    assert named.result() == "fetch-user-42"
    assert isinstance(unnamed.result(), str) and unnamed.result()


async def test_task_can_spawn_a_sibling_from_its_worker_thread(mode):
    futures = []

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:

        async def parent():
            futures.append(tg.create_task(double(50)))
            return "parent"

        first = tg.create_task(parent())
    assert first.result() == "parent"
    assert len(futures) == 1 and futures[0].result() == 100


async def test_exit_waits_for_siblings_spawned_late_by_tasks(mode):
    """A chain of tasks, each spawning the next after a sleep, after the body has finished."""
    results = []
    lock = threading.Lock()

    async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:

        async def link(depth):
            await asyncio.sleep(0.005)
            with lock:
                results.append(depth)
            if depth < 15:
                tg.create_task(link(depth + 1))

        tg.create_task(link(0))
    assert sorted(results) == list(range(16))


async def test_many_tasks_spawn_many_siblings(mode):
    count = 0
    lock = threading.Lock()

    async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:

        async def leaf():
            nonlocal count
            with lock:
                count += 1

        async def spawner():
            for _ in range(20):
                tg.create_task(leaf())
                await asyncio.sleep(0)

        for _ in range(20):
            tg.create_task(spawner())
    assert count == 400


async def test_sibling_spawned_from_a_worker_gets_a_future_on_that_workers_loop(mode):
    """The spawning task can await its sibling: the future lives on the spawner's own loop, and
    it is done by the time the group exits."""
    spawned = []

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:

        async def parent():
            spawned.append((tg.create_task(double(3)), asyncio.get_running_loop()))

        tg.create_task(parent())
    ((fut, spawner_loop),) = spawned
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is spawner_loop
    assert spawner_loop is not asyncio.get_running_loop()
    assert fut.done() and fut.result() == 6


async def test_asyncio_sleep_works_inside_tasks(mode):
    async def sleeper(i):
        await asyncio.sleep(0.01)
        return i

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        futures = [tg.create_task(sleeper(i)) for i in range(6)]
    assert [f.result() for f in futures] == list(range(6))


async def test_asyncio_to_thread_works_inside_tasks(mode, pool):
    def blocking(x):
        time.sleep(0.01)
        return x + 1, threading.get_ident()

    async def offload(x):
        return await asyncio.to_thread(blocking, x), threading.get_ident()

    async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
        fut = tg.create_task(offload(1))
    (value, helper_thread), worker_thread = fut.result()
    assert value == 2
    assert helper_thread != worker_thread


async def test_asyncio_timeout_works_inside_tasks(mode):
    async def times_out():
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(30)
        except TimeoutError:
            return "timed out"

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(times_out())
    assert fut.result() == "timed out"


async def test_asyncio_wait_for_works_inside_tasks(mode):
    async def waits():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(30), 0.01)
        return await asyncio.wait_for(double(4), 30)

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(waits())
    assert fut.result() == 8


async def test_asyncio_taskgroup_works_inside_tasks(mode):
    async def inner():
        async with asyncio.TaskGroup() as inner_tg:
            parts = [inner_tg.create_task(double(i)) for i in range(3)]
        return [p.result() for p in parts]

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(inner())
    assert fut.result() == [0, 2, 4]


async def test_a_group_can_be_nested_inside_a_task(mode):
    async def inner_group(base):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as inner_tg:
            parts = [inner_tg.create_task(double(base + i)) for i in range(3)]
        return [p.result() for p in parts]

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        futures = [tg.create_task(inner_group(10 * i)) for i in range(3)]
    assert [f.result() for f in futures] == [[20 * i + 2 * j for j in range(3)] for i in range(3)]


async def test_threaded_gather_can_run_inside_a_task(mode):
    async def inner_gather():
        return await threaded_gather(double(1), double(2), num_threads=2, mode=mode)

    async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
        fut = tg.create_task(inner_gather())
    assert fut.result() == [2, 4]


async def test_groups_can_run_concurrently_on_one_loop(mode):
    async def one_group(base):
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            futures = [tg.create_task(double(base + i)) for i in range(5)]
        return [f.result() for f in futures]

    results = await asyncio.gather(*(one_group(100 * g) for g in range(4)))
    assert results == [[2 * (100 * g + i) for i in range(5)] for g in range(4)]


async def test_group_can_be_created_outside_a_running_loop():
    group = ThreadedTaskGroup(num_threads=2)  # constructed here, entered inside a coroutine

    async def use():
        async with group as tg:
            fut = tg.create_task(double(8))
        return fut.result()

    assert await use() == 16


async def test_aenter_returns_the_group_itself():
    group = ThreadedTaskGroup(num_threads=1)
    async with group as tg:
        assert tg is group


async def test_large_num_threads_with_few_tasks(mode):
    async with ThreadedTaskGroup(num_threads=16, mode=mode) as tg:
        fut = tg.create_task(double(2))
    assert fut.result() == 4


async def test_results_of_every_type_come_back_unchanged(mode):
    sentinel = object()
    values = [None, 0, "text", b"bytes", (1, 2), [3], {"k": "v"}, sentinel, 1.5, 10**40]

    async def give(v):
        return v

    async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
        futures = [tg.create_task(give(v)) for v in values]
    assert all(f.result() is v for f, v in zip(futures, values))


async def test_no_never_awaited_or_pending_task_warnings_after_a_normal_group(mode):
    import gc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
            for i in range(50):
                tg.create_task(double(i))
        gc.collect()
    assert [str(w.message) for w in caught] == []
