"""Shared fixtures and checks for the thrasks test-suite.

- ``async def test_...`` functions run in a fresh ``asyncio.run`` loop, under a hang guard
  (``asyncio.timeout``): a lost wake-up fails the test instead of hanging the run. Raise the guard
  for one test with ``@pytest.mark.hang_guard(seconds)``.
- ``mode`` runs a test once per ``SchedulingMode``; ``pool`` is a fresh ``WorkerPool`` shut down
  after the test.
- After every test: no thread started by the test is still running (worker threads of the shared
  pool, named ``thrasks-worker-N``, are persistent by design and are not counted), and asyncio
  logged no error ("Task was destroyed but it is pending", "exception was never retrieved", ...).
- A "coroutine ... was never awaited" RuntimeWarning, an exception escaping a thread, or an
  exception ignored in ``__del__`` fails the test.

Nothing here puts the source tree on ``sys.path``: the tests import the INSTALLED thrasks (the
source tree has no compiled ``_core``). Run them from outside the checkout, e.g.
``cd /tmp && python -X dev -m pytest /path/to/thrasks/tests``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import threading

import pytest
from hypothesis import HealthCheck, settings

import thrasks
from thrasks import SchedulingMode, WorkerPool

DEFAULT_HANG_GUARD = 60.0
# Hang guards only turn a hang into a failure; on an interpreter many times slower (the
# ThreadSanitizer and debug legs of tools/dev.sh test) they are stretched by this factor.
TIMEOUT_SCALE = float(os.environ.get("THRASKS_TIMEOUT_SCALE", "1"))
THREAD_EXIT_GRACE = 10.0
WORKER_THREAD_PREFIX = "thrasks-worker-"

settings.register_profile(
    "thrasks",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thrasks-long",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The instrumented interpreters (pytest-tsan, pytest-debug) run the whole suite with fewer
# examples and smaller stress sizes: the same code paths, a fraction of the repetitions.
settings.register_profile(
    "thrasks-quick",
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("THRASKS_HYPOTHESIS_PROFILE", "thrasks"))

#: Repetition counts of the stress tests are multiplied by this (THRASKS_WORK_SCALE, default 1).
WORK_SCALE = float(os.environ.get("THRASKS_WORK_SCALE", "1"))


def scaled(n: int) -> int:
    """``n`` repetitions, scaled for slow interpreters (at least 1)."""
    return max(1, round(n * WORK_SCALE))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hang_guard(seconds): raise the hang guard of an async test (default 60 s)"
    )
    config.addinivalue_line(
        "markers", "allow_asyncio_errors: the test expects asyncio to log errors (not checked)"
    )
    for line in (
        "error:coroutine .* was never awaited:RuntimeWarning",
        "error::pytest.PytestUnraisableExceptionWarning",
        "error::pytest.PytestUnhandledThreadExceptionWarning",
    ):
        config.addinivalue_line("filterwarnings", line)


def pytest_report_header(config: pytest.Config) -> str:
    return f"thrasks {thrasks.__version__} imported from {os.path.dirname(thrasks.__file__)}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run ``async def`` tests in a fresh event loop (a tiny pytest-asyncio)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    marker = pyfuncitem.get_closest_marker("hang_guard")
    guard = (marker.args[0] if marker else DEFAULT_HANG_GUARD) * TIMEOUT_SCALE
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def guarded():
        async with asyncio.timeout(guard):
            await pyfuncitem.obj(**kwargs)

    asyncio.run(guarded())
    return True


@pytest.fixture(params=list(SchedulingMode), ids=lambda m: m.name)
def mode(request) -> SchedulingMode:
    """Each test that takes ``mode`` runs once per scheduling mode."""
    return request.param


@pytest.fixture
def pool():
    """A fresh WorkerPool of its own, shut down (threads joined) after the test."""
    p = WorkerPool()
    try:
        yield p
    finally:
        p.shutdown(wait=True)


class _ErrorRecorder(logging.Handler):
    """Keeps the messages only: a record's exc_info would keep frames (and what they hold) alive."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._records_lock:
            self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _no_leaks(request):
    """No thread outlives its test; asyncio logs no error while it runs."""
    before = set(threading.enumerate())
    recorder = _ErrorRecorder()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(recorder)
    try:
        yield
        gc.collect()
    finally:
        asyncio_logger.removeHandler(recorder)
    if request.node.get_closest_marker("allow_asyncio_errors") is None:
        messages = list(recorder.messages)
        assert not messages, f"asyncio logged errors during the test: {messages}"
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith(WORKER_THREAD_PREFIX)
    ]
    for t in leaked:
        t.join(THREAD_EXIT_GRACE)
    still = [t for t in leaked if t.is_alive()]
    assert not still, f"threads leaked by the test: {still}"
