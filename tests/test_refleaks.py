"""Reference-leak hunting, the way CPython's ``regrtest -R`` does it, one test per scenario.

Runs only on a debug interpreter (``--with-pydebug``: ``sys.gettotalrefcount`` exists);
``tools/dev.sh test`` runs it in the ``pytest-debug`` step, on a free-threaded debug build.

How a scenario is measured (as ``Lib/test/libregrtest/refleak.py`` does):

* One *run* is ``asyncio.run(...)`` of the scenario, repeated ``REPEAT`` times inside that one
  loop: every run has an event loop of its own. The worker pool is made once, outside the runs,
  unless the scenario is about pools.
* After each run: the caches CPython keeps between runs are cleared, the garbage collector runs,
  and three counters are read: ``sys.gettotalrefcount()`` (every reference the interpreter
  holds), ``sys.getallocatedblocks()`` (every memory block the object allocator has handed out)
  and the number of open file descriptors. Strings interned during the run are discounted, as
  regrtest does (they live until the interpreter exits).
* ``WARMUPS`` runs first, not measured (caches fill, lazy imports happen, free lists grow), then
  ``RUNS`` measured runs, each giving one delta per counter.
* A leak is what regrtest calls one: references that grow in EVERY measured run (every delta >= 1),
  memory blocks that grow by at least half a block per repetition in every run (the free-threaded
  build's block count drifts by a block or two per run on its own: see ``Hunt.leaked``), or a
  file-descriptor count that changes at all. One-off growth (a free
  list or a cache that grows once, a deallocation that lands in the next run) is noise and
  tolerated, as in regrtest.

A leak of one reference per task, per group or per wake-up in the C core grows the counters by
``REPEAT`` or more in every run; the test then fails with the scenario's name and the deltas.
``test_the_check_detects_an_intentional_leak`` proves that the measurement can fail.

Only the public API is used (``ThreadedTaskGroup``, ``threaded_gather``, ``WorkerPool``,
``SchedulingMode``), so the tests do not depend on how the C core is organised.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather

pytestmark = pytest.mark.skipif(
    not hasattr(sys, "gettotalrefcount"),
    reason="reference-leak hunting needs a debug interpreter (--with-pydebug: sys.gettotalrefcount)",
)

WARMUPS = int(os.environ.get("THRASKS_REFLEAK_WARMUPS", "3"))
RUNS = int(os.environ.get("THRASKS_REFLEAK_RUNS", "3"))
REPEAT = int(os.environ.get("THRASKS_REFLEAK_REPEAT", "4"))  # the scenario, per run
THREADS = 2
GUARD = 30.0  # seconds: a hang guard for one run, not a performance claim

Scenario = Callable[[WorkerPool], Awaitable[None]]


# ---- the measurement ---------------------------------------------------------------------------


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _interned_immortal() -> int:
    """Strings interned (and made immortal) so far: discounted, as regrtest does."""
    size = sys.getunicodeinternedsize
    try:
        return size(_only_immortal=True)  # type: ignore[call-arg]  # 3.14+
    except TypeError:
        return size()


def _cleanup() -> None:
    """Clear what CPython caches between runs (regrtest's dash_R_cleanup, in short), then collect."""
    import abc  # noqa: F401  (abc caches hold weak references only; nothing to clear)
    import re

    re.purge()
    sys._clear_type_cache()
    clear_internal = getattr(sys, "_clear_internal_caches", None)
    if clear_internal is not None:
        clear_internal()
    for _ in range(3):
        gc.collect()


@dataclass
class Report:
    """The deltas of every measured run, per counter."""

    refs: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def leaked(self) -> list[str]:
        """What leaked, by regrtest's rules (empty: nothing)."""
        found = []
        if self.refs and all(d >= 1 for d in self.refs):
            found.append("references")
        # Memory blocks: every delta at least half a block per repetition. On the free-threaded
        # build the count lags behind the objects: a block that a worker thread allocated and
        # another thread freed waits on mimalloc's cross-thread list until that worker allocates
        # again, so an idle worker makes the count drift by a block or two per run (seen:
        # [1, 2, 1] with references [0, 0, 0]). A leak per task or per group grows it by REPEAT or
        # more in every run, and shows in the references too.
        if self.blocks and all(d >= max(1, REPEAT // 2) for d in self.blocks):
            found.append("memory blocks")
        if any(self.fds):
            found.append("file descriptors")
        return found

    def __str__(self) -> str:
        return f"references {self.refs}, memory blocks {self.blocks}, file descriptors {self.fds}"


def _counters() -> tuple[int, int, int]:
    _cleanup()
    interned = _interned_immortal()
    return (
        sys.gettotalrefcount() - 2 * interned,
        sys.getallocatedblocks() - interned,
        _fd_count(),
    )


def hunt(run_once: Callable[[], None], warmups: int = WARMUPS, runs: int = RUNS) -> Report:
    """Call run_once() warmups + runs times; return the deltas of the measured runs.

    Log records below ERROR are not even created meanwhile: pytest keeps every captured record
    until the test ends, so asyncio's debug-mode "Executing <Task ...> took 0.15 seconds"
    warnings (which a slow debug interpreter on a busy machine emits at random) would look like
    a leak. Errors are still logged, and still fail the test (tests/conftest.py).
    """
    report = Report()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        before = _counters()
        for i in range(warmups + runs):
            run_once()
            after = _counters()
            if i >= warmups:
                report.refs.append(after[0] - before[0])
                report.blocks.append(after[1] - before[1])
                report.fds.append(after[2] - before[2])
            before = after
    finally:
        logging.disable(previous)
    return report


def run_scenario(scenario: Scenario, pool: WorkerPool) -> Callable[[], None]:
    """One run: a fresh event loop, the scenario REPEAT times in it."""

    async def main() -> None:
        async with asyncio.timeout(GUARD):
            for _ in range(REPEAT):
                await scenario(pool)

    return lambda: asyncio.run(main())


def assert_no_leak(name: str, scenario: Scenario, pool: WorkerPool) -> None:
    report = hunt(run_scenario(scenario, pool))
    leaked = report.leaked()
    assert not leaked, (
        f"scenario '{name}' leaks {' and '.join(leaked)}: deltas per run after {WARMUPS} warm-up runs "
        f"({REPEAT} repetitions each): {report}"
    )


@pytest.fixture(scope="module")
def hunt_pool():
    """One pool for the whole module: its threads exist before the first warm-up run."""
    pool = WorkerPool(num_threads=THREADS)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


# ---- coroutines the scenarios run on the workers ----------------------------------------------


async def square(i: int) -> int:
    await asyncio.sleep(0)
    return i * i


async def fail(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


async def sleep_until_cancelled(started: threading.Event) -> None:
    started.set()
    await asyncio.sleep(3600)


async def started_then_fail(started: threading.Event) -> None:
    await wait_started(started)
    raise ValueError("boom")


async def fail_together(barrier: threading.Barrier, message: str) -> None:
    """Fail at the same moment as the other task (on the other worker: round robin over two):
    no await between the barrier and the raise, so neither is cancelled before it fails."""
    barrier.wait()
    raise ValueError(message)


async def wait_started(*events: threading.Event) -> None:
    """Poll until the worker-side coroutines have started, so every run takes the same path
    (cancelling a running task, not one that never started)."""
    while not all(e.is_set() for e in events):
        await asyncio.sleep(0.001)


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def name_and_var() -> tuple[str, str]:
    task = asyncio.current_task()
    assert task is not None
    return task.get_name(), VAR.get()


# ---- scenarios ----------------------------------------------------------------------------------


async def task_group(pool: WorkerPool, mode: SchedulingMode) -> None:
    async with ThreadedTaskGroup(num_threads=THREADS, mode=mode, pool=pool) as tg:
        futures = [tg.create_task(square(i)) for i in range(8)]
    assert [f.result() for f in futures] == [i * i for i in range(8)]


def test_task_group_round_robin(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        await task_group(pool, SchedulingMode.ROUND_ROBIN)

    assert_no_leak("task group, ROUND_ROBIN", scenario, hunt_pool)


def test_task_group_queue(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        await task_group(pool, SchedulingMode.QUEUE)

    assert_no_leak("task group, QUEUE", scenario, hunt_pool)


@pytest.mark.parametrize("mode", list(SchedulingMode), ids=lambda m: m.name)
def test_gather(hunt_pool, mode):
    async def scenario(pool: WorkerPool) -> None:
        results = await threaded_gather(*(square(i) for i in range(8)), num_threads=THREADS, mode=mode, pool=pool)
        assert results == [i * i for i in range(8)]

    assert_no_leak(f"threaded_gather, {mode.name}", scenario, hunt_pool)


def test_gather_return_exceptions(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        results = await threaded_gather(
            square(2), fail("one"), square(3), fail("two"), num_threads=THREADS, pool=pool, return_exceptions=True
        )
        assert results[0] == 4 and results[2] == 9
        assert [str(r) for r in (results[1], results[3])] == ["one", "two"]

    assert_no_leak("threaded_gather, return_exceptions=True", scenario, hunt_pool)


def test_gather_of_mixed_coroutines_and_futures(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_soon(future.set_result, "future")
        task = asyncio.ensure_future(square(5))  # a task on the caller's loop
        results = await threaded_gather(square(1), future, task, square(2), num_threads=THREADS, pool=pool)
        assert results == [1, "future", 25, 4]

    assert_no_leak("threaded_gather of coroutines, a future and a task", scenario, hunt_pool)


def test_cancelling_a_task_from_the_caller(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        started = threading.Event()
        async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
            victim = tg.create_task(sleep_until_cancelled(started))
            survivor = tg.create_task(square(3))
            await wait_started(started)
            assert victim.cancel()
        assert victim.cancelled()
        assert survivor.result() == 9

    assert_no_leak("Future.cancel() of a running task, from the caller", scenario, hunt_pool)


def test_group_abort_after_a_task_failure(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        started = [threading.Event(), threading.Event()]
        with pytest.raises(ValueError, match="boom"):
            async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
                siblings = [tg.create_task(sleep_until_cancelled(e)) for e in started]
                tg.create_task(started_then_fail(started[0]))
                await wait_started(*started)
                await asyncio.sleep(3600)  # the body is cancelled too
        assert all(s.cancelled() for s in siblings)

    assert_no_leak("group aborted by a failing task", scenario, hunt_pool)


def test_timeout_cancelling_a_group(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        started = [threading.Event(), threading.Event()]
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(None) as timeout:
                async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
                    futures = [tg.create_task(sleep_until_cancelled(e)) for e in started]
                    await wait_started(*started)
                    timeout.reschedule(loop.time())  # expires now: tasks are running
        assert all(f.cancelled() for f in futures)

    assert_no_leak("asyncio.timeout cancelling a group", scenario, hunt_pool)


def test_parent_cancelled(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        started = threading.Event()

        async def parent() -> None:
            async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
                tg.create_task(sleep_until_cancelled(started))
                tg.create_task(square(2))

        task = asyncio.create_task(parent())
        await wait_started(started)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert_no_leak("the group's parent task cancelled", scenario, hunt_pool)


def test_exceptions_in_tasks(hunt_pool):
    # Plain try/except, not pytest.raises: pytest keeps bookkeeping per use (ExceptionInfo,
    # compiled match patterns) that shows as a block or two of growth per run on the debug build.
    async def scenario(pool: WorkerPool) -> None:
        try:
            async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
                tg.create_task(fail("alone"))
        except ValueError as exc:
            assert str(exc) == "alone"
        else:
            raise AssertionError("the group did not raise")
        barrier = threading.Barrier(2, timeout=GUARD)
        try:
            async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
                tg.create_task(fail_together(barrier, "first"))
                tg.create_task(fail_together(barrier, "second"))
        except ExceptionGroup as group:
            assert sorted(str(e) for e in group.exceptions) == ["first", "second"]
        else:
            raise AssertionError("the group did not raise")
        try:
            await threaded_gather(fail("gathered"), num_threads=THREADS, pool=pool)
        except ValueError as exc:
            assert str(exc) == "gathered"
        else:
            raise AssertionError("the gather did not raise")

    assert_no_leak("exceptions raised by tasks (group: one, several; gather)", scenario, hunt_pool)


def test_create_task_with_name_and_context(hunt_pool):
    async def scenario(pool: WorkerPool) -> None:
        context = contextvars.copy_context()
        context.run(VAR.set, "in context")
        async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
            future = tg.create_task(name_and_var(), name="hunted", context=context)
        assert future.result() == ("hunted", "in context")

    assert_no_leak("create_task(name=, context=)", scenario, hunt_pool)


def test_worker_side_create_task(hunt_pool):
    async def spawner(tg: ThreadedTaskGroup) -> asyncio.Future[int]:
        # On a worker: a sibling on the caller's group (its future belongs to the caller's loop).
        return tg.create_task(square(7))

    async def scenario(pool: WorkerPool) -> None:
        async with ThreadedTaskGroup(num_threads=THREADS, pool=pool) as tg:
            outer = tg.create_task(spawner(tg))
        assert outer.result().result() == 49

    assert_no_leak("create_task called from a worker", scenario, hunt_pool)


def test_gather_nested_in_a_task(hunt_pool):
    async def branch(pool: WorkerPool) -> list[int]:
        return await threaded_gather(square(1), square(2), num_threads=THREADS, pool=pool)

    async def scenario(pool: WorkerPool) -> None:
        assert await threaded_gather(branch(pool), branch(pool), num_threads=THREADS, pool=pool) == [[1, 4], [1, 4]]

    assert_no_leak("threaded_gather inside a task on a worker", scenario, hunt_pool)


def test_pool_create_and_shutdown(hunt_pool):
    async def scenario(_: WorkerPool) -> None:
        with WorkerPool(num_threads=THREADS) as pool:
            assert await threaded_gather(square(1), square(2), num_threads=THREADS, pool=pool) == [1, 4]
        assert pool.closed

    assert_no_leak("WorkerPool created, used and shut down", scenario, hunt_pool)


# ---- the check itself can fail -----------------------------------------------------------------

_KEPT: list[object] = []


def test_the_check_detects_an_intentional_leak(hunt_pool):
    """A scenario that keeps one new object per repetition: the hunt must call it a leak of
    references and of memory blocks (and the same scenario without the leak must pass)."""

    async def leaky(pool: WorkerPool) -> None:
        await threaded_gather(square(1), num_threads=THREADS, pool=pool)
        _KEPT.append(object())

    report = hunt(run_scenario(leaky, hunt_pool))
    _KEPT.clear()
    assert report.leaked() == ["references", "memory blocks"], str(report)
    assert all(d >= REPEAT for d in report.refs), str(report)

    async def clean(pool: WorkerPool) -> None:
        await threaded_gather(square(1), num_threads=THREADS, pool=pool)

    assert hunt(run_scenario(clean, hunt_pool)).leaked() == []


def test_the_check_detects_a_leaked_file_descriptor(hunt_pool, tmp_path):
    files = []

    async def leaky(pool: WorkerPool) -> None:
        await threaded_gather(square(1), num_threads=THREADS, pool=pool)
        files.append(open(tmp_path / f"f{len(files)}", "w"))  # noqa: SIM115 - kept open on purpose

    try:
        report = hunt(run_scenario(leaky, hunt_pool))
    finally:
        for f in files:
            f.close()
    assert "file descriptors" in report.leaked(), str(report)


# ---- the rules, without an interpreter in the loop ---------------------------------------------


@pytest.mark.parametrize(
    ("refs", "leaks"),
    [
        ([3, 0, 0], False),  # regrtest's examples of noise (bpo-30776)
        ([0, 1, 0], False),
        ([8, -8, 1], False),
        ([5, 5, 6], True),  # and of leaks
        ([10, 1, 1], True),
    ],
)
def test_leak_rule_is_regrtests(refs, leaks):
    assert (Report(refs=refs, blocks=[0] * len(refs), fds=[0] * len(refs)).leaked() == ["references"]) is leaks
