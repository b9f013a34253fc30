"""Allocation failures in thrasks' own C code always end cleanly (issue 12, item 3).

With the fault-injection build (meson -Dfault_injection=true, the pytest-debug leg of the test
command), _core._fault_arm(k) makes the k-th allocation or object creation reached by thrasks'
C code fail, in any thread. Each scenario is swept over k = 1, 2, ... until a run completes with
no injected failure, i.e. over every allocation site the scenario reaches. Every run must end
with the right result or a MemoryError (never SystemError, a crash, a hang or a leaked job),
and the pool must work afterwards.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, _core, threaded_gather

pytestmark = [
    pytest.mark.skipif(not getattr(_core, "FAULT_INJECTION", 0), reason="needs -Dfault_injection=true"),
    pytest.mark.allow_asyncio_errors,
]

MAX_SITES = 600        # a scenario reaching more sites than this is a test bug
RUN_TIMEOUT = 20.0     # seconds: a hang guard per injected run, not a performance claim


async def leaf(i):
    await asyncio.sleep(0)
    return i * i


async def scenario_group(pool, mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
        futures = [tg.create_task(leaf(i)) for i in range(6)]
    return [f.result() for f in futures]


async def scenario_gather(pool, mode):
    return await threaded_gather(*(leaf(i) for i in range(6)), num_threads=2, mode=mode, pool=pool)


async def scenario_cancellation(pool, mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
        slow = tg.create_task(asyncio.sleep(30))
        quick = tg.create_task(leaf(3))
        await asyncio.sleep(0.01)
        slow.cancel()
    return [slow.cancelled(), quick.result()]


async def scenario_failure(pool, mode):
    async def bad():
        raise ValueError("task failed")

    try:
        async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:
            tg.create_task(bad())
            tg.create_task(asyncio.sleep(30))
    except ValueError as exc:
        return [str(exc)]
    return ["no error"]


async def scenario_fanout(pool, mode):
    async with ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool) as tg:

        async def parent():
            kids = [tg.create_task(leaf(i)) for i in range(3)]
            return [await k for k in kids]

        top = tg.create_task(parent())
    return top.result()


async def scenario_pool_growth(pool, mode):
    with WorkerPool() as own:
        return await threaded_gather(*(leaf(i) for i in range(3)), num_threads=3, mode=mode, pool=own)


SCENARIOS = {
    "group": (scenario_group, [i * i for i in range(6)]),
    "gather": (scenario_gather, [i * i for i in range(6)]),
    "cancellation": (scenario_cancellation, [True, 9]),
    "failure": (scenario_failure, ["task failed"]),
    "fanout": (scenario_fanout, [0, 1, 4]),
    "pool_growth": (scenario_pool_growth, [0, 1, 4]),
}


def is_memory_error(exc: BaseException) -> bool:
    """MemoryError itself, or a group of task errors with a MemoryError in it, whose other
    members are what the scenario raises anyway (failure: its ValueError) or cancellations."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_memory_error(e) for e in exc.exceptions) and all(
            is_memory_error(e) or isinstance(e, asyncio.CancelledError) or str(e) == "task failed"
            for e in exc.exceptions
        )
    return False


def live_jobs(at_most: int | None = None) -> int:
    """Jobs alive now. With at_most: wait (bounded) for jobs still finishing on a worker after
    the loop that waited for them was closed (they are dropped when they finish)."""
    for _ in range(200):
        gc.collect()
        n = sum(1 for o in gc.get_objects() if type(o) is _core.Job)
        if at_most is None or n <= at_most:
            return n
        time.sleep(0.01)
    return n


@pytest.fixture
def unraisable():
    """Record what is reported as unraisable (an allocation failure inside a loop callback is
    reported, like in asyncio), and what asyncio logs, as text only: pytest's own hook and log
    capture would keep the objects, tracebacks and frames alive, hiding or faking leaks."""
    seen: list[str] = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(f"{u.exc_type.__name__}: {u.err_msg or ''} {u.object!r:.80}")
    asyncio_logger = logging.getLogger("asyncio")
    propagate = asyncio_logger.propagate
    asyncio_logger.propagate = False  # keep records away from pytest's log capture
    try:
        yield seen
    finally:
        sys.unraisablehook = old
        asyncio_logger.propagate = propagate


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_allocation_failure_ends_cleanly(name, mode, unraisable):
    scenario, expected = SCENARIOS[name]
    outcomes = {"result": 0, "memory_error": 0}
    with WorkerPool(2) as pool:
        baseline_jobs = live_jobs()
        for k in range(1, MAX_SITES + 1):
            _core._fault_arm(k)
            try:
                result = asyncio.run(asyncio.wait_for(scenario(pool, mode), RUN_TIMEOUT))
            except TimeoutError:
                _core._fault_arm(0)
                pytest.fail(f"{name}: hang with allocation site {k} failing")
            except BaseException as exc:  # noqa: BLE001 - classified below
                _core._fault_arm(0)
                if not is_memory_error(exc):
                    raise AssertionError(f"{name}: site {k} failing gave {exc!r}, not MemoryError") from exc
                outcomes["memory_error"] += 1
            else:
                fired = _core._fault_state()[1]
                _core._fault_arm(0)
                # a failure the C code absorbed (retried, reported) may still give the result
                assert result == expected, f"{name}: site {k} failing gave {result!r}"
                outcomes["result"] += 1
                if not fired:
                    break
            # the pool still works after each injected failure
            after = asyncio.run(asyncio.wait_for(threaded_gather(leaf(2), num_threads=2, pool=pool), RUN_TIMEOUT))
            assert after == [4], f"{name}: the pool is broken after site {k} failed"
        else:
            pytest.fail(f"{name}: more than {MAX_SITES} allocation sites: the sweep never ended")
        assert k > 1, "the scenario reached no allocation site at all"
        assert live_jobs(at_most=baseline_jobs) <= baseline_jobs, "jobs leaked by injected failures"
    assert all(u.startswith("MemoryError") for u in unraisable), unraisable
    print(f"{name}[{mode.name}]: {k - 1} sites, {outcomes}, {len(unraisable)} reported", file=sys.stderr)
