"""WorkerPool.stats() and WorkerPool(loop_factory=...) (issue 17, items 2 and 3)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import TIMEOUT_SCALE, scaled
from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather


# ---- stats ---------------------------------------------------------------------------------------


async def test_stats_add_up_after_a_known_workload(mode):
    with WorkerPool(2) as pool:
        began = [threading.Event() for _ in range(2)]

        async def ok(i):
            return i

        async def bad(i):
            raise ValueError(i)

        async def stuck(i):
            began[i].set()
            await asyncio.sleep(30)

        results = await threaded_gather(*(ok(i) for i in range(6)), *(bad(i) for i in range(2)),
                                        num_threads=2, mode=mode, pool=pool, return_exceptions=True)
        assert results[:6] == list(range(6)) and all(isinstance(r, ValueError) for r in results[6:])
        async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
            victims = [tg.create_task(stuck(i)) for i in range(2)]
            for e in began:  # a worker counts a task as started before its first step runs
                assert await asyncio.to_thread(e.wait, 10 * TIMEOUT_SCALE)
            running = sum(w["running"] for w in pool.stats())
            for v in victims:
                v.cancel()
        stats = pool.stats()
        assert running == 2
        assert [w["thread"] for w in stats] == ["thrasks-worker-0", "thrasks-worker-1"]
        assert sum(w["started"] for w in stats) == 10
        assert sum(w["finished"] for w in stats) == 6
        assert sum(w["failed"] for w in stats) == 2
        assert sum(w["cancelled"] for w in stats) == 2
        assert all(w["running"] == 0 and w["inbox"] == 0 and w["shared_queue"] == 0 for w in stats)
        assert all(w["alive"] for w in stats)
        assert all(w["busy_seconds"] >= 0 and w["idle_seconds"] >= 0 for w in stats)
        assert sum(w["busy_seconds"] + w["idle_seconds"] for w in stats) > 0


def test_stats_of_an_empty_pool_is_an_empty_list():
    with WorkerPool() as pool:
        assert pool.stats() == []


async def test_stats_count_cpu_time_as_busy():
    with WorkerPool(1) as pool:

        async def spin():
            total = 0
            for i in range(300_000):
                total += i * i
            return total

        before = pool.stats()[0]["busy_seconds"]
        await threaded_gather(spin(), num_threads=1, pool=pool)
        assert pool.stats()[0]["busy_seconds"] > before


async def test_a_worker_lingers_briefly_after_work_and_then_sleeps():
    """After a job a worker with nothing else to do keeps looking at its mailbox for a short while
    (loop_runner.c, linger: a caller awaiting one result after another then finds it awake) and
    then sleeps in its selector: its CPU time over the next half second stays a small fraction of
    it. A worker that never stopped lingering would spend most of that half second on a core. The
    bound is 20 times what a linger may cost (at most 1 ms of 500 ms, linger.h), so load does not
    matter."""
    with WorkerPool(1) as pool:

        async def trivial():
            return 1

        for _ in range(20):
            assert await threaded_gather(trivial(), num_threads=1, pool=pool) == [1]
        before = pool.stats()[0]["busy_seconds"]
        time.sleep(0.5)  # the caller's loop blocked: no iteration, no new job
        assert pool.stats()[0]["busy_seconds"] - before < 0.02


async def test_linger_false_makes_an_idle_worker_sleep_at_once(mode):
    """WorkerPool(linger=False): a worker never watches for the next job (stats: no linger), where
    the same calls on a default pool do linger (the counter counts, so the first check can fail)."""

    async def trivial():
        return 1

    for linger in (False, True):
        with WorkerPool(2, linger=linger) as pool:
            assert pool.linger is linger
            for _ in range(20):
                assert await threaded_gather(trivial(), num_threads=2, mode=mode, pool=pool) == [1]
            stats = pool.stats()
        assert all(w["linger_hits"] <= w["lingers"] for w in stats)
        if linger:
            assert sum(w["lingers"] for w in stats) >= 1, stats
        else:
            assert [(w["lingers"], w["linger_hits"]) for w in stats] == [(0, 0), (0, 0)], stats


@pytest.mark.parametrize("bad", [0, 1, None, "no"])
def test_linger_must_be_true_or_false(bad):
    with pytest.raises(TypeError, match=r"linger must be True or False, got "):
        WorkerPool(linger=bad)


def default_pool_in_a_child(thrasks_linger: str) -> subprocess.CompletedProcess:
    """A fresh interpreter with THRASKS_LINGER set prints its default pool's linger."""
    code = "import thrasks; print(thrasks.default_pool().linger)"
    env = {**os.environ, "THRASKS_LINGER": thrasks_linger}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("value", "expected"), [("0", "False"), ("1", "True"), ("", "True")])
def test_the_default_pool_takes_linger_from_the_environment(value, expected):
    out = default_pool_in_a_child(value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_a_bad_thrasks_linger_value_says_what_it_accepts():
    out = default_pool_in_a_child("off")
    assert out.returncode != 0
    assert "ValueError: THRASKS_LINGER must be 0 (idle workers sleep at once) or 1 (they linger), got 'off'" in out.stderr


async def test_one_call_after_another_goes_to_the_worker_that_went_idle_last(mode):
    """A route starts on the worker that went idle last (pool.c, route_prefer_idle): it is still
    awake, or the one whose linger learnt the caller's pace (linger.h). So a caller that awaits one
    single-task gather after another on a 2-worker pool keeps to one worker and lets the other
    sleep, where the pool's round-robin counter alone alternates them (a switch on every call).
    The caller pauses 10 ms between calls (its loop blocked), so the worker has gone idle before
    each call; a worker preempted for that long may hand the role to the other once or twice."""
    with WorkerPool(2) as pool:

        async def where():
            return threading.current_thread().name

        names = []
        for _ in range(scaled(40)):
            names += await threaded_gather(where(), num_threads=1, mode=mode, pool=pool)
            time.sleep(0.01)
        switches = sum(a != b for a, b in zip(names, names[1:]))
        assert switches <= 3, names


async def test_a_steered_caller_leaves_the_round_robin_to_the_others():
    """A route steered to an idle worker gives its draw back to the pool counter, so a caller that
    is steered call after call does not hold the counter still: the 8 long routes started between
    its calls (they draw from the counter, the idle worker being busy with the caller's call)
    spread over the pool, at most 3 per worker when every quick call is steered and 4 when none is
    (quick and long calls then take turns on the counter). Moving the counter to just after the
    steered worker instead put 7 of the 8 on one worker."""
    with WorkerPool(4) as pool:

        async def where():
            return threading.current_thread().name

        async def long():
            name = threading.current_thread().name
            await asyncio.sleep(0.5)  # in flight: its worker does not go idle meanwhile
            return name

        longs = []
        for _ in range(8):
            quick = asyncio.ensure_future(threaded_gather(where(), num_threads=1, pool=pool))
            longs.append(asyncio.ensure_future(threaded_gather(long(), num_threads=1, pool=pool)))
            await quick  # both bound in the same loop iteration, the quick call first
            time.sleep(0.002)
        names = [n for r in await asyncio.gather(*longs) for n in r]
        assert max(names.count(n) for n in set(names)) <= 4, names


async def test_a_burst_of_calls_still_spreads_over_the_idle_workers(mode):
    """Only one route per idle spell is steered to the idle worker (it claims it): the other calls
    of a burst take the round-robin counter's workers, so a burst is not piled onto one worker."""
    with WorkerPool(2) as pool:
        gate = threading.Event()

        async def where():
            gate.wait(10)  # hold the worker: the burst cannot finish one call before the next
            return threading.current_thread().name

        async def warm():
            return 0

        await threaded_gather(warm(), num_threads=1, pool=pool)  # a worker went idle last
        calls = [threaded_gather(where(), num_threads=1, mode=mode, pool=pool) for _ in range(10)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)
        gate.set()
        names = [n for r in await asyncio.gather(*tasks) for n in r]
        assert {names.count(n) for n in set(names)} == {5}, names


# ---- loop_factory -------------------------------------------------------------------------------


def debug_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    return loop


class CountingLoop(asyncio.SelectorEventLoop):
    made = 0

    def __init__(self):
        super().__init__()
        type(self).made += 1


async def test_workers_run_the_loops_the_factory_makes(mode):
    with WorkerPool(loop_factory=debug_loop) as pool:

        async def where():
            loop = asyncio.get_running_loop()
            return loop.get_debug(), type(loop).__name__

        results = await threaded_gather(*(where() for _ in range(4)), num_threads=2, mode=mode, pool=pool)
        assert set(results) == {(True, "_UnixSelectorEventLoop")}
        assert pool.loop_factory is debug_loop


async def test_a_loop_subclass_factory_is_called_once_per_worker():
    CountingLoop.made = 0
    with WorkerPool(3, loop_factory=CountingLoop) as pool:
        assert CountingLoop.made == 3

        async def kind():
            return type(asyncio.get_running_loop()).__name__

        assert await threaded_gather(kind(), kind(), num_threads=3, pool=pool) == ["CountingLoop"] * 2


@pytest.mark.parametrize("bad", [lambda: None, lambda: 42, lambda: asyncio.Future])
def test_a_factory_that_does_not_return_a_loop_gets_a_clear_error(bad):
    with pytest.raises(TypeError, match=r"loop_factory must return an asyncio event loop"):
        WorkerPool(1, loop_factory=bad)


def test_a_factory_returning_a_closed_loop_is_refused():
    def closed():
        loop = asyncio.new_event_loop()
        loop.close()
        return loop

    with pytest.raises(ValueError, match=r"loop_factory must return a new event loop, not one that is closed"):
        WorkerPool(1, loop_factory=closed)


def test_a_non_callable_factory_is_refused_at_once():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"loop_factory must be a callable"):
            WorkerPool(loop_factory=loop)
    finally:
        loop.close()


async def test_a_bad_factory_fails_the_group_that_grows_the_pool_and_nothing_else(mode):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("no loop for you")
        return asyncio.new_event_loop()

    with WorkerPool(loop_factory=flaky) as pool:
        with pytest.raises(OSError, match="no loop for you"):
            async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool):
                pass
        assert pool.size == 1
        # the next growth calls the factory again, which works now
        async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
            f = tg.create_task(asyncio.sleep(0, "ok"))
        assert f.result() == "ok" and pool.size == 2


async def test_a_factory_may_use_the_pool_itself_without_deadlock():
    """The loop is made outside any lock of the pool (issue 12: re-entering it deadlocked)."""
    seen = []

    def curious():
        seen.append((pool.size, pool.closed))
        return asyncio.new_event_loop()

    pool = WorkerPool(loop_factory=curious)
    try:
        pool.ensure(2)
        assert seen == [(0, False), (1, False)]
    finally:
        pool.shutdown()


def test_mode_is_scheduling_mode_for_groups_with_a_factory():
    with WorkerPool(loop_factory=debug_loop) as pool:
        ThreadedTaskGroup(num_threads=1, mode=SchedulingMode.QUEUE, pool=pool)


# ---- regressions from the review of the C core (issue 12) ------------------------------------------


async def test_a_queue_group_ends_when_its_pool_is_shut_down_under_it():
    """Queued QUEUE-mode jobs of a stopping worker are resolved (cancelled) and its slot parked
    again, so the group's exit does not wait forever (a dropped serve message used to leave the
    slot ACTIVE with nobody serving it)."""
    pool = WorkerPool(1)
    gate = threading.Event()

    async def hold():
        gate.wait(10)  # blocks the only worker, so the rest stays queued

    async def quick(i):
        return i

    try:
        async with ThreadedTaskGroup(num_threads=1, mode=SchedulingMode.QUEUE, pool=pool) as tg:
            tg.create_task(hold())
            queued = [tg.create_task(quick(i)) for i in range(5)]
            await asyncio.sleep(0.02)
            pool.shutdown(wait=False)
            gate.set()
    except BaseExceptionGroup:
        pass
    assert all(f.cancelled() for f in queued)


async def test_a_bad_context_closes_the_coroutine(mode):
    """create_task(context=<not a Context>) raises TypeError and closes the coroutine it took."""
    async def never():
        raise AssertionError("must not run")

    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        coro = never()
        with pytest.raises(TypeError, match="context must be a contextvars.Context"):
            tg.create_task(coro, context={"not": "a context"})
        assert coro.cr_frame is None  # closed: no "never awaited" warning either
