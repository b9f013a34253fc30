"""Drop-in compatibility: the seed library's words, asyncio.gather's fail-fast calls, the shim's
fixes found in review, and standard argument errors from every C callable."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import traceback

import pytest

import thrasks
from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather
from thrasks import _core, _gather


class Probe:
    """A coroutine that records whether its body ran."""

    def __init__(self):
        self.ran = False

    async def run(self, value=None):
        self.ran = True
        await asyncio.sleep(0)
        return value


# ---- the seed library's error messages ------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, -10**30])
def test_num_threads_below_one_uses_the_seed_words(bad):
    with pytest.raises(ValueError, match=r"^num_threads must be at least 1"):
        ThreadedTaskGroup(num_threads=bad)


async def test_create_task_outside_async_with_uses_the_seed_words():
    group = ThreadedTaskGroup(num_threads=2)
    probe = Probe()
    coro = probe.run()
    with pytest.raises(RuntimeError, match=r"^ThreadedTaskGroup must be used in async with statement"):
        group.create_task(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED and not probe.ran


@pytest.mark.parametrize("bad", [0, 2.0, True, "4", 10**6])
async def test_num_threads_is_checked_in_one_place_with_one_message(bad):
    """ThreadedTaskGroup, threaded_gather and WorkerPool say the same thing for the same value."""
    messages = set()
    for make in (
        lambda: ThreadedTaskGroup(num_threads=bad),
        lambda: threaded_gather(num_threads=bad),
        lambda: WorkerPool(bad),
        lambda: _core._check_num_threads(bad),
    ):
        with pytest.raises((TypeError, ValueError)) as excinfo:
            make()
        messages.add((type(excinfo.value), str(excinfo.value)))
    assert len(messages) == 1, messages


# ---- threaded_gather fails fast, like asyncio.gather -----------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"num_threads": 0}, ValueError),
        ({"num_threads": "2"}, TypeError),
        ({"mode": "QUEUE"}, TypeError),
        ({"pool": object()}, TypeError),
    ],
)
async def test_bad_gather_arguments_raise_at_call_time_and_close_the_coroutines(kwargs, exc):
    probes = [Probe() for _ in range(3)]
    coros = [p.run() for p in probes]
    with pytest.raises(exc):
        threaded_gather(*coros, **kwargs)  # no await: the call itself raises
    for coro, probe in zip(coros, probes):
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED and not probe.ran


async def test_a_non_awaitable_raises_at_call_time():
    probe = Probe()
    coro = probe.run()
    with pytest.raises(TypeError, match="awaitable is required"):
        threaded_gather(coro, 42)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_a_shut_down_pool_raises_at_call_time():
    pool = WorkerPool(1)
    pool.shutdown()
    coro = Probe().run()
    with pytest.raises(RuntimeError, match="has been shut down"):
        threaded_gather(coro, pool=pool)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


async def test_a_gather_nobody_awaits_still_runs_and_warns_about_nothing(mode):
    probes = [Probe() for _ in range(4)]
    fut = threaded_gather(*(p.run(i) for i, p in enumerate(probes)), mode=mode)
    del fut  # started at the call, like asyncio.gather: no "never awaited" warning
    for _ in range(500):
        if all(p.ran for p in probes):
            break
        await asyncio.sleep(0.01)
    assert all(p.ran for p in probes)


async def test_the_gather_result_is_a_future_and_a_coroutine_for_seed_code(mode):
    """The seed's threaded_gather was an async def: its result goes to create_task too."""
    result = threaded_gather(Probe().run(1), Probe().run(2), mode=mode)
    assert asyncio.isfuture(result) and asyncio.iscoroutine(result)
    assert await asyncio.create_task(result) == [1, 2]
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(threaded_gather(Probe().run(3), mode=mode))
    assert task.result() == [3]
    assert await asyncio.ensure_future(threaded_gather(Probe().run(4), mode=mode)) == [4]


def test_asyncio_run_of_threaded_gather_works_without_a_running_loop(mode):
    assert asyncio.run(threaded_gather(Probe().run(5), Probe().run(6), mode=mode)) == [5, 6]


def test_a_deferred_gather_never_run_closes_its_coroutines():
    probe = Probe()
    coro = probe.run()
    deferred = threaded_gather(coro)
    assert asyncio.iscoroutine(deferred)
    del deferred
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED and not probe.ran


def test_a_deferred_gather_still_checks_its_arguments_at_call_time():
    coro = Probe().run()
    with pytest.raises(ValueError, match="at least 1"):
        threaded_gather(coro, num_threads=0)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


# ---- fixes in the shim ---------------------------------------------------------------------------


async def test_a_single_failure_keeps_its_own_context(mode):
    """asyncio never shows the group's CancelledError as the context of a task's error."""
    with pytest.raises(ValueError) as excinfo:
        async with ThreadedTaskGroup(num_threads=2, mode=mode) as tg:

            async def fail():
                raise ValueError("boom")

            tg.create_task(fail())
            await asyncio.sleep(30)  # the body is cancelled when the task fails
    assert excinfo.value.__context__ is None
    text = "".join(traceback.format_exception(excinfo.value))
    assert "During handling of the above exception" not in text


async def test_mixed_gather_never_closes_a_coroutine_that_already_runs(monkeypatch):
    """A coroutine passed twice runs once; if a later create_task fails, the running one must
    not be closed (review finding in thrasks/_gather.py)."""
    real_group = _core.Group
    calls = []

    class FailingSecondCall:
        def __init__(self, *args):
            self._group = real_group(*args)

        def _bind(self, *args):
            return self._group._bind(*args)

        def create_task(self, coro):
            calls.append(coro)
            if len(calls) == 2:
                coro.close()
                raise MemoryError("injected")
            return self._group.create_task(coro)

        def __setattr__(self, name, value):
            if name == "_exiting":
                self._group._exiting = value
            else:
                object.__setattr__(self, name, value)

    class FakeCore:
        Group = FailingSecondCall
        KIND_PLAIN = _core.KIND_PLAIN
        Future = _core.Future

    started = asyncio.Event()

    async def long_running():
        started.set()  # runs on a worker: never awaited by this loop, only checked below
        await asyncio.sleep(0.2)
        return "done"

    shared = long_running()
    other = Probe().run()
    done = asyncio.get_running_loop().create_future()
    done.set_result("fut")
    monkeypatch.setattr(_gather, "_core", FakeCore)
    with pytest.raises(MemoryError):
        _gather._gather_mixed((shared, done, other, shared), [True, False, True, True], 2, 0,
                              thrasks.default_pool(), False)
    monkeypatch.undo()
    # the shared coroutine is running on a worker (it was cancelled, not closed under it)
    assert inspect.getcoroutinestate(other) == inspect.CORO_CLOSED
    for _ in range(500):
        if inspect.getcoroutinestate(shared) == inspect.CORO_CLOSED:
            break
        await asyncio.sleep(0.01)
    assert inspect.getcoroutinestate(shared) == inspect.CORO_CLOSED  # finished by its task


def test_a_pool_made_from_the_c_type_is_shut_down_at_exit(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import asyncio, threading
        from thrasks import _core, ThreadedTaskGroup, SchedulingMode

        pool = _core.WorkerPool(2)        # the C type itself, never shut down by the script
        assert pool.size == 2

        async def main():
            async with ThreadedTaskGroup(2, pool=pool) as tg:
                f = tg.create_task(asyncio.sleep(0, "ok"))
            return f.result()

        print(asyncio.run(main()))
        print(pool in _core._live_pools())
    """))
    proc = subprocess.run([sys.executable, "-X", "dev", str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "True"]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


# ---- standard argument errors from the C callables -------------------------------------------------


async def test_create_task_reports_arguments_like_cpython(mode):
    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        coro = Probe().run()
        with pytest.raises(TypeError, match=r"create_task\(\) got multiple values for argument 'coro'"):
            tg.create_task(coro, coro=coro)
        with pytest.raises(TypeError, match=r"create_task\(\) takes exactly 1 positional argument \(2 given\)"):
            tg.create_task(coro, "name")
        with pytest.raises(TypeError, match=r"create_task\(\) got an unexpected keyword argument 'nme'"):
            tg.create_task(coro, nme="x")
        with pytest.raises(TypeError, match=r"create_task\(\) missing required argument 'coro' \(pos 1\)"):
            tg.create_task()
        coro.close()


async def test_future_cancel_reports_arguments_like_cpython(mode):
    async with ThreadedTaskGroup(num_threads=1, mode=mode) as tg:
        fut = tg.create_task(asyncio.sleep(0))
        with pytest.raises(TypeError, match=r"cancel\(\) takes at most 1 positional argument \(2 given\)"):
            fut.cancel("a", "b")
        with pytest.raises(TypeError, match=r"cancel\(\) got an unexpected keyword argument 'message'"):
            fut.cancel(message="a")


@pytest.mark.parametrize(
    "obj",
    [_core.Group.create_task, _core.Future.cancel, _core.GatheringFuture.cancel, _core.WorkerPool.shutdown,
     _core.WorkerPool.ensure, _core.WorkerPool.stats, _core.gather, _core.Group._bind],
)
def test_every_public_c_callable_has_a_text_signature(obj):
    assert inspect.signature(obj) is not None


def test_gather_mode_is_checked_without_truncation():
    async def main():
        coro = Probe().run()
        with pytest.raises(ValueError, match="unknown scheduling mode"):
            _core.gather((coro,), 2, False, 2**32, thrasks.default_pool())
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    asyncio.run(main())


def test_drain_of_something_else_cannot_crash():
    """The old _core._drain(x) cast any object to a group; delivery is a bound method now."""
    assert not hasattr(_core, "_drain")
    group = _core.Group(1, SchedulingMode.ROUND_ROBIN.value, thrasks.default_pool())
    assert group._deliver() is None  # an unbound group has nothing to deliver
    with pytest.raises(TypeError):
        _core.Group._deliver(None)
