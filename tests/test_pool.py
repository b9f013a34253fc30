"""WorkerPool: persistent worker threads reused by every group and gather.

Threads are created once and grow on demand; a pool passed as ``pool=`` isolates work; a closed
pool refuses work; the shared default pool serves ``pool=None`` and never leaks threads.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading

import pytest
from conftest import scaled

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather


async def current_thread():
    await asyncio.sleep(0)
    return threading.current_thread()


async def run_group(num_threads, pool=None, mode=SchedulingMode.ROUND_ROBIN, n_tasks=None):
    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode, pool=pool) as tg:
        futures = [tg.create_task(current_thread()) for _ in range(n_tasks or 4 * num_threads)]
    return {f.result() for f in futures}


def test_new_pool_is_open():
    with WorkerPool() as pool:
        assert pool.closed is False


def test_pool_with_explicit_size_reports_at_least_that_size_once_used():
    with WorkerPool(3) as pool:
        asyncio.run(run_group(3, pool))
        assert pool.size == 3


async def test_pool_grows_on_demand_to_the_largest_num_threads(pool):
    await run_group(2, pool)
    assert pool.size == 2
    await run_group(5, pool)
    assert pool.size == 5
    await run_group(3, pool)
    assert pool.size == 5


async def test_gather_grows_the_pool_too(pool):
    await threaded_gather(current_thread(), num_threads=3, pool=pool)
    assert pool.size == 3


async def test_worker_threads_are_named_thrasks_worker_n(pool, mode):
    threads = await run_group(3, pool, mode)
    assert all(re.fullmatch(r"thrasks-worker-\d+", t.name) for t in threads)


async def test_worker_threads_are_reused_across_groups(pool, mode):
    first = await run_group(2, pool, mode)
    second = await run_group(2, pool, mode)
    assert len(first | second) <= 2


async def test_worker_threads_are_reused_by_gather(pool):
    group_threads = await run_group(2, pool)
    gather_threads = set(
        await threaded_gather(*(current_thread() for _ in range(8)), num_threads=2, pool=pool)
    )
    assert gather_threads <= group_threads


async def test_no_thread_is_started_per_group(pool):
    await run_group(4, pool)
    before = threading.active_count()
    for _ in range(50):
        await run_group(4, pool)
    assert threading.active_count() == before


async def test_tasks_run_on_the_given_pools_threads(mode):
    with WorkerPool() as a, WorkerPool() as b:
        threads_a = await run_group(2, a, mode)
        threads_b = await run_group(2, b, mode)
    assert not threads_a & threads_b


async def test_given_pool_is_isolated_from_the_default_pool(pool):
    default_threads = await run_group(2)
    own_threads = await run_group(2, pool)
    assert not default_threads & own_threads


def test_context_manager_exit_closes_the_pool_and_joins_its_threads():
    with WorkerPool() as pool:
        threads = asyncio.run(run_group(3, pool))
    assert pool.closed is True
    assert not any(t.is_alive() for t in threads)


def test_context_manager_returns_the_pool():
    pool = WorkerPool()
    with pool as entered:
        assert entered is pool


def test_shutdown_wait_joins_the_worker_threads():
    pool = WorkerPool()
    threads = asyncio.run(run_group(2, pool))
    pool.shutdown(wait=True)
    assert pool.closed
    assert not any(t.is_alive() for t in threads)


def test_shutdown_waits_by_default():
    pool = WorkerPool()
    threads = asyncio.run(run_group(2, pool))
    pool.shutdown()
    assert not any(t.is_alive() for t in threads)


def test_shutdown_without_wait_closes_at_once_and_threads_end():
    pool = WorkerPool()
    threads = asyncio.run(run_group(2, pool))
    pool.shutdown(wait=False)
    assert pool.closed
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)


def test_shutdown_twice_is_harmless():
    pool = WorkerPool()
    asyncio.run(run_group(1, pool))
    pool.shutdown()
    pool.shutdown()
    assert pool.closed


def test_shutdown_of_an_unused_pool():
    pool = WorkerPool()
    pool.shutdown()
    assert pool.closed


def test_pool_shutdown_signature():
    assert inspect.signature(WorkerPool.shutdown).parameters["wait"].default is True


async def test_closed_pool_refuses_a_group():
    pool = WorkerPool()
    pool.shutdown()

    async def never():
        raise AssertionError("ran on a closed pool")

    coro = never()
    with pytest.raises(RuntimeError):
        async with ThreadedTaskGroup(num_threads=2, pool=pool) as tg:
            tg.create_task(coro)
    coro.close()  # no-op if the runtime closed it already


async def test_closed_pool_refuses_gather_and_closes_the_coroutines():
    pool = WorkerPool()
    pool.shutdown()

    async def never():
        raise AssertionError("ran on a closed pool")

    coro = never()
    with pytest.raises(RuntimeError):
        await threaded_gather(coro, num_threads=2, pool=pool)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_shutdown_cancels_tasks_still_running_on_the_pool():
    """Shutting a pool down under a running group does not hang: its tasks are cancelled."""
    pool = WorkerPool()
    started = threading.Event()
    cancelled = threading.Event()

    async def sleeper():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        async with asyncio.timeout(20):  # hang guard
            async with ThreadedTaskGroup(num_threads=1, pool=pool) as tg:
                fut = tg.create_task(sleeper())
                await asyncio.to_thread(started.wait, 10)
                await asyncio.to_thread(pool.shutdown, True)
    finally:
        pool.shutdown()
    assert cancelled.is_set()
    assert fut.cancelled()


async def test_default_pool_is_used_when_pool_is_none():
    threads = await run_group(2)
    assert all(t.name.startswith("thrasks-worker-") for t in threads)


async def test_default_pool_threads_are_shared_by_groups_and_gather():
    await run_group(2)
    before = threading.active_count()
    await run_group(2)
    await threaded_gather(current_thread(), current_thread(), num_threads=2)
    assert threading.active_count() == before


@pytest.mark.hang_guard(300)
async def test_no_thread_leak_across_2000_groups(mode):
    async def tiny():
        return 1

    async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:  # warm the default pool up
        tg.create_task(tiny())
    before = threading.active_count()
    for _ in range(scaled(2000)):
        async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:
            tg.create_task(tiny())
            tg.create_task(tiny())
    assert threading.active_count() == before


@pytest.mark.hang_guard(300)
async def test_no_thread_leak_across_2000_gathers(mode):
    async def tiny():
        return 1

    await threaded_gather(tiny(), num_threads=4, mode=mode)
    before = threading.active_count()
    for _ in range(scaled(2000)):
        await threaded_gather(tiny(), tiny(), num_threads=4, mode=mode)
    assert threading.active_count() == before


def test_no_thread_leak_across_100_pools():
    before = threading.active_count()
    for _ in range(100):
        with WorkerPool() as pool:
            asyncio.run(run_group(2, pool))
    assert threading.active_count() == before


async def test_one_pool_serves_several_caller_loops_at_once(pool, mode):
    def caller(base):
        async def main():
            async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
                futures = [tg.create_task(asyncio.sleep(0, result=base + i)) for i in range(100)]
            return [f.result() for f in futures]

        return asyncio.run(main())

    results = await asyncio.gather(*(asyncio.to_thread(caller, 1000 * k) for k in range(3)))
    assert results == [[1000 * k + i for i in range(100)] for k in range(3)]
