"""A task may await the siblings it spawns (asyncio.TaskGroup's fan-out pattern).

The future ``create_task`` returns from a worker thread lives on that worker's loop, so the
spawning task can await it; the group still tracks the child, waits for it, cancels it on
failure and sees its exception. Each behaviour is checked in both modes, with the child on the
parent's own worker (``num_threads=1``) and on another one.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, threaded_gather

PLACEMENTS = {"same_worker": 1, "other_worker": 2}


@pytest.fixture(params=list(PLACEMENTS), ids=list(PLACEMENTS))
def num_threads(request) -> int:
    return PLACEMENTS[request.param]


async def child_value(i: int) -> tuple[int, str]:
    await asyncio.sleep(0.001)
    return i * i, threading.current_thread().name


async def test_parent_awaits_the_children_it_spawns(mode, num_threads):
    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            kids = [tg.create_task(child_value(i)) for i in range(6)]
            results = [await k for k in kids]
            return [v for v, _ in results], {name for _, name in results}, threading.current_thread().name

        top = tg.create_task(parent())
    values, child_threads, parent_thread = top.result()
    assert values == [i * i for i in range(6)]
    if num_threads == 1:
        assert child_threads == {parent_thread}
    elif mode is SchedulingMode.ROUND_ROBIN:
        assert child_threads - {parent_thread}, "round robin puts some children on the other worker"


async def test_results_match_asyncio_taskgroup(mode, num_threads):
    async def run(make_group):
        async with make_group() as tg:

            async def parent(n):
                kids = [tg.create_task(leaf(n, i)) for i in range(n)]
                return sum([await k for k in kids])

            async def leaf(n, i):
                await asyncio.sleep(0)
                return n * 10 + i

            tops = [tg.create_task(parent(n)) for n in range(1, 5)]
        return [t.result() for t in tops]

    expected = await run(asyncio.TaskGroup)
    assert await run(lambda: ThreadedTaskGroup(num_threads=num_threads, mode=mode)) == expected


async def test_a_failing_child_fails_the_group_and_the_parent_sees_it_or_is_cancelled(mode, num_threads):
    seen = []

    async def bad():
        await asyncio.sleep(0.001)
        raise ValueError("child failed")

    with pytest.raises(ValueError, match="child failed"):
        async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

            async def parent():
                kid = tg.create_task(bad())
                try:
                    await kid
                except ValueError as exc:
                    seen.append(exc)
                    raise
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    raise

            tg.create_task(parent())
    # asyncio.TaskGroup cancels the parent task; across threads the parent may see the child's
    # error first. Either way it is told, and the group raises the child's error once.
    assert len(seen) == 1
    assert seen[0] == "cancelled" or str(seen[0]) == "child failed"


async def test_a_failing_parent_cancels_the_children_it_spawned(mode, num_threads):
    kids = []
    started = threading.Event()

    async def sleeper():
        started.set()
        await asyncio.sleep(30)

    with pytest.raises(RuntimeError, match="parent failed"):
        async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

            async def parent():
                kids.extend(tg.create_task(sleeper()) for _ in range(3))
                while not started.is_set():
                    await asyncio.sleep(0.001)
                raise RuntimeError("parent failed")

            tg.create_task(parent())
    assert len(kids) == 3 and all(k.cancelled() for k in kids)


async def test_the_parent_can_cancel_a_child_it_awaits(mode, num_threads):
    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            kid = tg.create_task(asyncio.sleep(30))
            assert kid.cancel("stop it")  # started or not, the child ends cancelled
            try:
                await kid
            except asyncio.CancelledError as exc:
                return "cancelled", exc.args
            return "not cancelled", ()

        top = tg.create_task(parent())
    assert top.result() == ("cancelled", ("stop it",))


async def test_a_child_that_swallows_the_cancel_gives_its_result_to_the_parent(mode, num_threads):
    started = threading.Event()

    async def stubborn():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "kept going"

    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            kid = tg.create_task(stubborn())
            while not started.is_set():  # a task cancelled before it starts never runs at all
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.001)
            kid.cancel()
            return await kid

        top = tg.create_task(parent())
    assert top.result() == "kept going"


async def test_children_futures_are_done_when_the_group_exits(mode, num_threads):
    kids = []
    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            kids.extend(tg.create_task(child_value(i)) for i in range(5))

        tg.create_task(parent())
    assert all(k.done() for k in kids)
    assert [k.result()[0] for k in kids] == [i * i for i in range(5)]


async def test_threaded_gather_inside_a_task_awaits_its_coroutines(mode, num_threads):
    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            results = await threaded_gather(*(child_value(i) for i in range(5)), num_threads=num_threads, mode=mode)
            return [v for v, _ in results]

        top = tg.create_task(parent())
    assert top.result() == [i * i for i in range(5)]


async def test_cancelling_a_gather_from_inside_a_task_cancels_its_coroutines(mode, num_threads):
    cancelled = []
    started = []
    lock = threading.Lock()

    async def sleeper(i):
        with lock:
            started.append(i)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            with lock:
                cancelled.append(i)
            raise

    async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:

        async def parent():
            gathering = threaded_gather(*(sleeper(i) for i in range(4)), num_threads=num_threads, mode=mode)
            while len(started) < 4:  # a coroutine cancelled before it starts never runs at all
                await asyncio.sleep(0.001)
            gathering.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gathering
            return "ok"

        top = tg.create_task(parent())
    assert top.result() == "ok"
    # Like asyncio.gather: the first cancelled child settles the gather; the others finish
    # cancelling on their own, each through its except block.
    for _ in range(2000):
        if len(cancelled) == 4:
            break
        await asyncio.sleep(0.005)
    assert sorted(cancelled) == [0, 1, 2, 3]
