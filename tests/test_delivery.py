"""How finished jobs reach their owner's loop: the per-loop hub (csrc/loop_hub.h) and the
owner's own drain (`_deliver`, also scheduled with call_soon after an interrupted or failed
delivery) must be able to run in any order without losing or duplicating a wake-up.

Regression: a group's queue of finished jobs drained by `_deliver` while its hub node was still
posted, then refilled by a worker, pushed the same node on the hub a second time; the hub's stack
became a cycle and hub_run crashed (seen as a segfault in test_worker_death on the GIL leg).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather


def wait_delivered(group, fut) -> None:
    """Block the loop's thread (no loop iteration, so the hub cannot run) and drain the group's
    finished jobs by hand until `fut` is settled."""
    deadline = time.monotonic() + 30
    while not fut.done():
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.001)
        group._deliver()


def run_repeatedly(main, times: int) -> None:
    """asyncio.run(main(pool)) `times` times on one 2-worker pool (a fresh caller loop, and so a
    fresh hub, each time)."""
    pool = WorkerPool(2)
    try:
        for _ in range(times):
            asyncio.run(main(pool))
    finally:
        pool.shutdown()


@pytest.mark.parametrize("mode", list(SchedulingMode), ids=lambda m: m.name)
def test_a_drain_outside_the_hub_while_its_node_is_posted(mode):
    async def main(pool):
        async def job(i):
            return i

        async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as group:
            futures = []
            for round_ in range(5):
                # each job's completion posts the group's hub node (its queue was empty); the
                # hand drain empties the queue while the node stays posted; the next job's
                # completion then finds the queue empty again
                f = group.create_task(job(round_))
                wait_delivered(group, f)
                futures.append(f)
            await asyncio.sleep(0)  # the hub runs now, with the node posted once
            more = [group.create_task(job(10 + i)) for i in range(20)]
        assert [f.result() for f in futures] == list(range(5))
        assert [f.result() for f in more] == list(range(10, 30))

    run_repeatedly(main, 3)


def test_hand_drains_racing_the_hub_lose_nothing():
    """Hand drains on the loop's thread while workers finish jobs at random moments."""
    async def main(pool):
        async def job(i):
            await asyncio.sleep(0)
            return i

        async with ThreadedTaskGroup(num_threads=2, pool=pool) as group:
            futures = [group.create_task(job(i)) for i in range(200)]
            deadline = time.monotonic() + 30
            while not all(f.done() for f in futures) and time.monotonic() < deadline:
                group._deliver()
                await asyncio.sleep(0)
        assert [f.result() for f in futures] == list(range(200))

    run_repeatedly(main, 5)


class CountingLoop(asyncio.SelectorEventLoop):
    """A loop that counts its iterations."""

    iterations = 0

    def _run_once(self):
        self.iterations += 1
        super()._run_once()


@pytest.mark.parametrize("fail", [False, True])
def test_a_gather_wakes_its_loop_once_for_its_successes(fail):
    """A gather looks at nothing but its last outcome or an unsuccessful one, so only those wake
    the caller's loop (job.h, wake_when_all): one wake-up iteration, then the one that resumes the
    awaiting task. Before, each batch of finished jobs woke it: 3 iterations in most calls of 8
    jobs on 2 workers, sometimes 4. A failure still wakes it at once (the gather raises it), and
    the successes that finish after it are delivered with the last job."""

    async def trivial(i):
        if fail and i == 3:
            raise ValueError(i)
        return i

    async def main(pool):
        loop = asyncio.get_running_loop()
        await threaded_gather(*(trivial(i) for i in range(8)), num_threads=2, pool=pool, return_exceptions=True)
        counts = []
        for _ in range(50):
            before = loop.iterations
            got = await threaded_gather(
                *(trivial(i) for i in range(8)), num_threads=2, pool=pool, return_exceptions=True
            )
            counts.append(loop.iterations - before)
            assert [type(g) if isinstance(g, BaseException) else g for g in got] == [
                ValueError if fail and i == 3 else i for i in range(8)
            ]
        return counts

    with WorkerPool(2) as pool:
        counts = asyncio.run(main(pool), loop_factory=CountingLoop)
    if fail:
        # the failure wakes the loop as soon as it is there; the rest come with the last job
        assert max(counts) <= 3, counts
    else:
        assert max(counts) == 2, counts
