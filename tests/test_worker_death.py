"""A worker whose event loop dies takes nothing with it (issue 12, item 1), and an interrupt while
outcomes are delivered propagates like in asyncio without losing the other outcomes (item 2).

A loop dies when something escapes its run_forever(): a KeyboardInterrupt or SystemExit raised by
a plain loop callback (not by a task: that one is the task's outcome), or a bug inside the loop.
Every job the worker held then finishes with a RuntimeError naming the worker thread, chained to
what killed it; the group reacts as to any task failure; the pool replaces the worker on next use.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather

pytestmark = [
    # the dying worker reports what killed it once, like an exception escaping a thread
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.allow_asyncio_errors,
]


class BreakableLoop(asyncio.SelectorEventLoop):
    """A worker loop that dies with `error` on its next iteration once `break_with` is called."""

    def __init__(self):
        super().__init__()
        self.error: BaseException | None = None

    def break_with(self, error: BaseException) -> None:
        self.error = error
        self.call_soon_threadsafe(lambda: None)  # make sure it iterates

    def _run_once(self):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        super()._run_once()


def kill_current_worker(error: BaseException) -> None:
    """From a task: make the loop it runs on die with `error` on its next iteration."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, BreakableLoop):
        loop.break_with(error)
    else:  # a plain loop: a callback raising an interrupt escapes run_forever
        def interrupt():
            raise error

        loop.call_soon(interrupt)


async def victim(started: threading.Event):
    started.set()
    await asyncio.sleep(30)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)], ids=["KeyboardInterrupt", "SystemExit"])
async def test_an_interrupt_raised_by_a_loop_callback_fails_the_workers_jobs(mode, error):
    with WorkerPool(1) as pool:
        started = threading.Event()
        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with ThreadedTaskGroup(num_threads=1, mode=mode, pool=pool) as tg:
                tg.create_task(victim(started))

                async def killer():
                    while not started.is_set():
                        await asyncio.sleep(0.001)
                    kill_current_worker(error)
                    await asyncio.sleep(30)

                tg.create_task(killer())
        # both tasks ran on the worker that died: both fail with its death, chained to the cause
        assert len(excinfo.value.exceptions) == 2
        for err in excinfo.value.exceptions:
            assert isinstance(err, RuntimeError)
            assert "the worker thread 'thrasks-worker-0' running this task died" in str(err)
            assert type(err.__cause__) is type(error)


async def test_a_loop_that_dies_of_a_bug_fails_every_job_it_held_and_is_replaced(mode):
    with WorkerPool(loop_factory=BreakableLoop) as pool:
        started = threading.Event()
        futures = []
        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with ThreadedTaskGroup(num_threads=1, mode=mode, pool=pool) as tg:
                futures.append(tg.create_task(victim(started)))
                futures.append(tg.create_task(victim(threading.Event())))

                async def killer():
                    while not started.is_set():
                        await asyncio.sleep(0.001)
                    kill_current_worker(ValueError("a bug in the loop"))
                    await asyncio.sleep(30)

                futures.append(tg.create_task(killer()))
        errors = excinfo.value.exceptions
        assert len(errors) == 3
        for err in errors:
            assert isinstance(err, RuntimeError) and "thrasks-worker-0" in str(err)
            assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "a bug in the loop"
        assert all(f.done() for f in futures)
        dead = pool._workers[0]
        assert not dead.alive
        # the pool replaces the worker on next use, and it works
        assert await threaded_gather(asyncio.sleep(0, "again"), num_threads=1, pool=pool) == ["again"]
        assert pool._workers[0] is not dead and pool._workers[0].alive
        assert pool.size == 1


async def test_jobs_posted_to_a_dead_worker_fail_promptly(mode):
    with WorkerPool(loop_factory=BreakableLoop) as pool:
        pool.ensure(1)
        loop = pool._workers[0].loop
        loop.break_with(KeyboardInterrupt())
        for _ in range(500):
            if not pool._workers[0].alive:
                break
            await asyncio.sleep(0.01)
        dead = pool._workers[0]
        assert not dead.alive
        # a new group replaces it: nothing is ever posted into the dead mailbox for good
        result = await threaded_gather(asyncio.sleep(0, 7), num_threads=1, pool=pool, mode=mode)
        assert result == [7]


async def test_gather_on_a_dying_worker_raises_the_workers_death(mode):
    with WorkerPool(loop_factory=BreakableLoop) as pool:
        started = threading.Event()

        async def killer():
            while not started.is_set():
                await asyncio.sleep(0.001)
            kill_current_worker(RuntimeError("loop bug"))
            await asyncio.sleep(30)

        with pytest.raises(RuntimeError, match="thrasks-worker-0") as excinfo:
            await threaded_gather(victim(started), killer(), num_threads=1, pool=pool, mode=mode)
        assert str(excinfo.value.__cause__) == "loop bug"


async def test_a_task_raising_keyboard_interrupt_is_its_outcome_not_a_death(mode):
    with WorkerPool(1) as pool:

        async def interrupted():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            async with ThreadedTaskGroup(num_threads=1, mode=mode, pool=pool) as tg:
                tg.create_task(interrupted())
        worker = pool._workers[0]
        assert worker.alive
        assert await threaded_gather(asyncio.sleep(0, 1), num_threads=1, pool=pool) == [1]
        assert pool._workers[0] is worker


# ---- interrupts during delivery -------------------------------------------------------------------


class InterruptingLoop(asyncio.SelectorEventLoop):
    """A caller loop whose call_soon raises KeyboardInterrupt once, when armed: like a signal
    arriving while a future's callbacks are scheduled (set_result -> call_soon)."""

    armed = False

    def call_soon(self, callback, *args, context=None):
        if self.armed and getattr(callback, "__self__", None) is not None and \
                type(callback.__self__).__name__ == "Task":
            type(self).armed = False
            raise KeyboardInterrupt
        return super().call_soon(callback, *args, context=context)


@pytest.mark.parametrize("mode", list(SchedulingMode), ids=lambda m: m.name)
def test_an_interrupt_during_delivery_propagates_and_loses_no_outcome(mode):
    loop = InterruptingLoop()
    pool = WorkerPool(2)
    try:
        state = {}

        async def start():
            gate = threading.Event()

            async def wait_gate(i):
                while not gate.is_set():
                    await asyncio.sleep(0.001)
                return i

            group = ThreadedTaskGroup(num_threads=2, mode=mode, pool=pool)
            await group.__aenter__()
            state["group"] = group
            state["futures"] = [group.create_task(wait_gate(i)) for i in range(6)]
            state["gate"] = gate

        async def wait_all():
            # awaiting a future adds a Task wake-up callback: its scheduling is what raises
            InterruptingLoop.armed = True
            state["gate"].set()
            return [await f for f in state["futures"]]

        loop.run_until_complete(start())
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(wait_all())
        InterruptingLoop.armed = False

        async def finish():
            results = [await f for f in state["futures"]]
            await state["group"].__aexit__(None, None, None)
            return results

        assert loop.run_until_complete(asyncio.wait_for(finish(), 30)) == list(range(6))
    finally:
        InterruptingLoop.armed = False
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        pool.shutdown()
