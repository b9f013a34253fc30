"""Stress: tens of thousands of tasks from several caller threads at once, each caller with its own
event loop; every result must come back to the right caller, in the right future.

Sizes are chosen to finish in seconds on two cores; the hang guards only catch lost wake-ups.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import scaled

from thrasks import ThreadedTaskGroup, WorkerPool, threaded_gather

N_CALLERS = 4
TASKS_PER_CALLER = scaled(5000)


def run_callers(caller_main, n_callers=N_CALLERS, timeout=240):
    """Run caller_main(k) in n threads, each in its own asyncio.run(); return their results."""
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(n_callers)

    def caller(k):
        try:
            start.wait()
            results[k] = asyncio.run(asyncio.wait_for(caller_main(k), timeout))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[k] = e

    threads = [threading.Thread(target=caller, args=(k,), name=f"caller-{k}") for k in range(n_callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    assert not any(t.is_alive() for t in threads), "a caller thread hung"
    assert not errors, errors
    return results


async def tagged(caller, i):
    if i % 7 == 0:
        await asyncio.sleep(0)
    return caller, i, threading.get_ident()


def test_several_callers_with_groups_each_get_their_own_results(mode):
    async def caller_main(k):
        loop = asyncio.get_running_loop()
        async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:
            futures = [tg.create_task(tagged(k, i)) for i in range(TASKS_PER_CALLER)]
        assert all(f.get_loop() is loop for f in futures)
        return [f.result()[:2] for f in futures]

    results = run_callers(caller_main)
    for k in range(N_CALLERS):
        assert results[k] == [(k, i) for i in range(TASKS_PER_CALLER)]


def test_several_callers_with_gather_each_get_their_own_results(mode):
    async def caller_main(k):
        results = await threaded_gather(
            *(tagged(k, i) for i in range(TASKS_PER_CALLER)), num_threads=4, mode=mode
        )
        return [r[:2] for r in results]

    results = run_callers(caller_main)
    for k in range(N_CALLERS):
        assert results[k] == [(k, i) for i in range(TASKS_PER_CALLER)]


def test_several_callers_on_one_shared_pool(mode):
    with WorkerPool(4) as pool:

        async def caller_main(k):
            async with ThreadedTaskGroup(num_threads=4, mode=mode, pool=pool) as tg:
                futures = [tg.create_task(tagged(k, i)) for i in range(TASKS_PER_CALLER)]
            return [f.result() for f in futures]

        results = run_callers(caller_main)
        pool_threads = {r[2] for k in results for r in results[k]}
    for k in range(N_CALLERS):
        assert [r[:2] for r in results[k]] == [(k, i) for i in range(TASKS_PER_CALLER)]
    assert len(pool_threads) <= 4


def test_several_callers_running_many_small_groups(mode):
    async def caller_main(k):
        out = []
        for g in range(scaled(300)):
            async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
                futures = [tg.create_task(tagged(k, 10 * g + i)) for i in range(5)]
            out.extend(f.result()[:2] for f in futures)
        return out

    results = run_callers(caller_main)
    for k in range(N_CALLERS):
        assert results[k] == [(k, i) for g in range(scaled(300)) for i in range(10 * g, 10 * g + 5)]


def test_several_callers_with_failing_groups(mode):
    """Concurrent aborts: every caller's groups fail and cancel their own tasks, and only theirs."""

    async def caller_main(k):
        caught = 0
        for g in range(scaled(100)):
            try:
                async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:
                    for _ in range(5):
                        tg.create_task(asyncio.sleep(30))
                    tg.create_task(failing(k, g))
            except ValueError as e:
                assert e.args == (k, g)
                caught += 1
        return caught

    async def failing(k, g):
        await asyncio.sleep(0)
        raise ValueError(k, g)

    results = run_callers(caller_main)
    assert results == {k: scaled(100) for k in range(N_CALLERS)}


@pytest.mark.hang_guard(240)
async def test_sibling_spawning_storm(mode):
    """100 tasks (fewer on the instrumented legs) each spawning 50 siblings from their worker
    threads while the group runs."""
    n_spawners = scaled(100)
    count = 0
    lock = threading.Lock()

    async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:

        async def leaf(i):
            nonlocal count
            with lock:
                count += 1
            return i

        async def spawner():
            futures = [tg.create_task(leaf(i)) for i in range(50)]
            await asyncio.sleep(0)
            return futures

        spawners = [tg.create_task(spawner()) for _ in range(n_spawners)]
    assert count == 50 * n_spawners
    assert all([f.result() for f in s.result()] == list(range(50)) for s in spawners)


@pytest.mark.hang_guard(240)
async def test_many_future_cancels_racing_with_completion(mode):
    """Cancel every other future while the tasks are finishing: each ends either cancelled or with
    its own result, never anything else, and the group exits."""

    async def quick(i):
        await asyncio.sleep(0)
        return i

    async with ThreadedTaskGroup(num_threads=4, mode=mode) as tg:
        futures = [tg.create_task(quick(i)) for i in range(scaled(5000))]
        for f in futures[::2]:
            f.cancel()
    for i, f in enumerate(futures):
        assert f.done()
        if i % 2 or not f.cancelled():
            assert f.result() == i


@pytest.mark.hang_guard(120)
async def test_repeated_large_bursts_never_lose_a_worker_wake_up(mode):
    """Regression: bursts of submissions racing with the worker's drain. A worker that read its
    wake-up fd after clearing its wake flag could eat a wake-up and sleep with work queued."""
    async def triv(i):
        return i

    for _ in range(scaled(60)):
        expected = list(range(2000))
        results = await asyncio.wait_for(
            threaded_gather(*(triv(i) for i in expected), num_threads=2, mode=mode), 30
        )
        assert results == expected
