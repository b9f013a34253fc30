"""Property tests with asyncio itself as the oracle.

A "spec" describes one coroutine: how often it yields (``asyncio.sleep(0)``), whether it sleeps a
little, and whether it then returns a value or raises one of a few exception types. For random
lists of specs, random ``num_threads`` (1..6) and both modes:

- ``threaded_gather(..., return_exceptions=True)`` equals ``asyncio.gather(..., return_exceptions=True)``
  (exceptions compared by type and args), also for mixes of coroutines and asyncio Tasks;
- without ``return_exceptions`` it returns what asyncio.gather returns, or raises one of the
  exceptions the coroutines raised;
- a ThreadedTaskGroup gives the sequential results, and when tasks fail it raises what the seed
  rule predicts from the failures that happened: one failure -> that exception itself, several ->
  an ExceptionGroup of exactly them.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from thrasks import SchedulingMode, ThreadedTaskGroup, threaded_gather


class CustomError(Exception):
    pass


EXCEPTION_TYPES = [ValueError, KeyError, RuntimeError, ZeroDivisionError, CustomError]


@dataclass(frozen=True)
class Spec:
    yields: int
    sleep: float
    value: int
    raises: type[Exception] | None

    async def run(self, record=None):
        try:
            for _ in range(self.yields):
                await asyncio.sleep(0)
            if self.sleep:
                await asyncio.sleep(self.sleep)
            if self.raises is not None:
                exc = self.raises(self.value)
                if record is not None:
                    record(exc)
                raise exc
            return self.value
        finally:
            if record is not None:
                record.finished()


specs_st = st.builds(
    Spec,
    yields=st.integers(0, 3),
    sleep=st.sampled_from([0.0, 0.0, 0.001, 0.003]),
    value=st.integers(-1000, 1000),
    raises=st.one_of(st.none(), st.sampled_from(EXCEPTION_TYPES)),
)
ok_specs_st = specs_st.map(lambda s: Spec(s.yields, s.sleep, s.value, None))
threads_st = st.integers(1, 6)
modes_st = st.sampled_from(list(SchedulingMode))


def normalize(outcome):
    if isinstance(outcome, BaseException):
        return ("raised", type(outcome), outcome.args)
    return ("returned", outcome)


class Recorder:
    """Thread-safe record of the exceptions the coroutines actually raised."""

    def __init__(self):
        self._lock = threading.Lock()
        self.raised: list[BaseException] = []
        self.n_finished = 0

    def __call__(self, exc):
        with self._lock:
            self.raised.append(exc)

    def finished(self):
        with self._lock:
            self.n_finished += 1

    async def wait_finished(self, n):
        """Keep the caller's loop alive until n coroutines have ended (gather does not cancel the
        others when it raises; their results still arrive on this loop)."""
        while True:
            with self._lock:
                if self.n_finished >= n:
                    break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), 60))


@given(specs=st.lists(specs_st, max_size=12), num_threads=threads_st, mode=modes_st)
def test_gather_with_return_exceptions_equals_asyncio_gather(specs, num_threads, mode):
    async def oracle():
        return await asyncio.gather(*(s.run() for s in specs), return_exceptions=True)

    async def subject():
        return await threaded_gather(
            *(s.run() for s in specs), num_threads=num_threads, return_exceptions=True, mode=mode
        )

    assert list(map(normalize, run(subject))) == list(map(normalize, run(oracle)))


@given(
    specs=st.lists(st.tuples(specs_st, st.booleans()), min_size=1, max_size=10),
    num_threads=threads_st,
    mode=modes_st,
)
def test_gather_of_coroutines_and_tasks_equals_asyncio_gather(specs, num_threads, mode):
    """Each spec is passed as a coroutine or, if its flag is set, as an asyncio Task."""

    def awaitables():
        return [asyncio.ensure_future(s.run()) if as_task else s.run() for s, as_task in specs]

    async def oracle():
        return await asyncio.gather(*awaitables(), return_exceptions=True)

    async def subject():
        return await threaded_gather(
            *awaitables(), num_threads=num_threads, return_exceptions=True, mode=mode
        )

    assert list(map(normalize, run(subject))) == list(map(normalize, run(oracle)))


@given(specs=st.lists(specs_st, min_size=1, max_size=12), num_threads=threads_st, mode=modes_st)
def test_gather_without_return_exceptions_returns_or_raises_like_asyncio_gather(specs, num_threads, mode):
    recorder = Recorder()

    async def oracle():
        return await asyncio.gather(*(s.run() for s in specs), return_exceptions=True)

    async def subject():
        try:
            return await threaded_gather(
                *(s.run(recorder) for s in specs), num_threads=num_threads, mode=mode
            )
        except Exception as e:  # noqa: BLE001 - compared below
            await recorder.wait_finished(len(specs))
            return e

    expected = run(oracle)
    got = run(subject)
    if not any(s.raises for s in specs):
        assert got == expected
    else:
        assert isinstance(got, Exception)
        assert any(got is e for e in recorder.raised)
        assert normalize(got) in {normalize(e) for e in expected if isinstance(e, BaseException)}


@given(specs=st.lists(ok_specs_st, max_size=16), num_threads=threads_st, mode=modes_st)
def test_group_results_equal_sequential_results(specs, num_threads, mode):
    async def sequential():
        return [await s.run() for s in specs]

    async def subject():
        async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:
            futures = [tg.create_task(s.run()) for s in specs]
        return [f.result() for f in futures]

    assert run(subject) == run(sequential)


@given(
    specs=st.lists(specs_st, min_size=1, max_size=12).filter(lambda ss: any(s.raises for s in ss)),
    num_threads=threads_st,
    mode=modes_st,
)
def test_group_failure_follows_the_seed_exception_rule(specs, num_threads, mode):
    recorder = Recorder()

    async def subject():
        futures = []
        try:
            async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:
                futures.extend(tg.create_task(s.run(recorder)) for s in specs)
        except BaseException as e:  # noqa: BLE001 - compared below
            return e, futures
        return None, futures

    raised, futures = run(subject)
    happened = recorder.raised
    assert happened, "a failing task can only be stopped by another failure"
    if len(happened) == 1:
        assert raised is happened[0]
    else:
        assert type(raised) is ExceptionGroup
        assert sorted(map(id, raised.exceptions)) == sorted(map(id, happened))
    # every future is settled: failed ones hold their exception, the others their value or a cancel
    for spec, fut in zip(specs, futures):
        assert fut.done()
        if fut.cancelled():
            continue
        if fut.exception() is not None:
            assert any(fut.exception() is e for e in happened)
        else:
            assert spec.raises is None and fut.result() == spec.value


@given(specs=st.lists(specs_st, max_size=12), num_threads=threads_st, mode=modes_st)
def test_group_of_tasks_that_swallow_errors_equals_asyncio_gather(specs, num_threads, mode):
    """Tasks that catch their own exception never abort the group: the group then gives exactly
    what asyncio.gather(return_exceptions=True) gives."""

    async def caught(spec):
        try:
            return await spec.run()
        except Exception as e:  # noqa: BLE001
            return e

    async def oracle():
        return await asyncio.gather(*(s.run() for s in specs), return_exceptions=True)

    async def subject():
        async with ThreadedTaskGroup(num_threads=num_threads, mode=mode) as tg:
            futures = [tg.create_task(caught(s)) for s in specs]
        return [f.result() for f in futures]

    assert list(map(normalize, run(subject))) == list(map(normalize, run(oracle)))
