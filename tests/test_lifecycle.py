"""Process lifecycle, each in a fresh interpreter (``sys.executable -X dev``): interpreter exit with a
busy pool, os.fork(), and the GIL staying disabled on free-threaded builds.

The child runs in an empty temporary directory, so it imports the same installed thrasks as this
process (never a source checkout that happens to be the working directory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import thrasks

# seconds: a hang guard, not a performance claim (stretched on slow interpreters: conftest.py)
EXIT_TIMEOUT = 60 * float(os.environ.get("THRASKS_TIMEOUT_SCALE", "1"))

# ThreadSanitizer cannot follow a process that forks once threads exist: its runtime refuses to
# start threads in such a child ("starting new threads after multi-threaded fork is not
# supported"). The fork tests are skipped on a --with-thread-sanitizer interpreter, and only they.
TSAN_INTERPRETER = "--with-thread-sanitizer" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
forks_after_threads = pytest.mark.skipif(
    TSAN_INTERPRETER,
    reason="ThreadSanitizer cannot run a child forked after threads exist (the test forks a process with a running pool)",
)
NOISE = ("Traceback", "Task was destroyed", "Fatal", "never awaited", "never retrieved", "Exception ignored")


# The exit tests start their work from a daemon thread whose loop is abandoned at exit. What that
# abandoned caller sees (its tasks cancelled by the shutdown) is not the point: it stays silent, so
# that any output on stderr comes from the runtime itself.
PRELUDE = """
import contextlib

def abandoned_caller(main):
    import asyncio
    with contextlib.suppress(BaseException):
        asyncio.run(main())
"""


def run_python(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-X", "dev", *args, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
    )


def assert_clean(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr
    for word in NOISE:
        assert word not in proc.stderr, proc.stderr


def test_child_imports_the_same_thrasks(tmp_path):
    proc = run_python(tmp_path, "import thrasks; print(thrasks.__file__)")
    assert_clean(proc)
    assert proc.stdout.strip() == thrasks.__file__


def test_exit_with_tasks_still_running_on_the_default_pool(tmp_path):
    """A background thread's asyncio.run() keeps a group busy (a task in time.sleep, tasks in
    asyncio.sleep(100)); the main thread returns: the interpreter exits cleanly."""
    proc = run_python(
        tmp_path,
        """
        import asyncio, threading, time
        from thrasks import ThreadedTaskGroup

        started = threading.Event()

        async def blocking():
            started.set()
            time.sleep(0.2)

        async def main():
            async with ThreadedTaskGroup(num_threads=3) as tg:
                tg.create_task(blocking())
                for _ in range(5):
                    tg.create_task(asyncio.sleep(100))

        threading.Thread(target=abandoned_caller, args=(main,), daemon=True).start()
        assert started.wait(10)
        print("main thread done")
        """,
    )
    assert_clean(proc)
    assert proc.stdout == "main thread done\n"


def test_exit_with_a_busy_gather_in_queue_mode(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import asyncio, threading, time
        from thrasks import SchedulingMode, threaded_gather

        started = threading.Event()

        async def blocking():
            started.set()
            time.sleep(0.2)

        async def main():
            await threaded_gather(blocking(), *(asyncio.sleep(100) for _ in range(6)),
                                  num_threads=2, mode=SchedulingMode.QUEUE)

        threading.Thread(target=abandoned_caller, args=(main,), daemon=True).start()
        assert started.wait(10)
        """,
    )
    assert_clean(proc)


def test_exit_with_an_unclosed_user_pool_running_tasks(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import asyncio, threading, time
        from thrasks import ThreadedTaskGroup, WorkerPool

        pool = WorkerPool(2)   # never shut down by the program
        started = threading.Event()

        async def blocking():
            started.set()
            time.sleep(0.2)

        async def main():
            async with ThreadedTaskGroup(num_threads=2, pool=pool) as tg:
                tg.create_task(blocking())
                tg.create_task(asyncio.sleep(100))

        threading.Thread(target=abandoned_caller, args=(main,), daemon=True).start()
        assert started.wait(10)
        """,
    )
    assert_clean(proc)


def test_sys_exit_from_main_with_a_busy_pool(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import asyncio, sys, threading
        from thrasks import ThreadedTaskGroup

        started = threading.Event()

        async def sleeper():
            started.set()
            await asyncio.sleep(100)

        async def main():
            async with ThreadedTaskGroup(num_threads=2) as tg:
                tg.create_task(sleeper())

        threading.Thread(target=abandoned_caller, args=(main,), daemon=True).start()
        assert started.wait(10)
        sys.exit(0)
        """,
    )
    assert_clean(proc)


def test_normal_program_prints_nothing_but_its_output(tmp_path):
    """Groups, gathers and a pool used and finished normally: at exit, -X dev reports nothing
    (no ResourceWarning for an unclosed loop or socket, no warning of any kind)."""
    proc = run_python(
        tmp_path,
        """
        import asyncio
        from thrasks import SchedulingMode, ThreadedTaskGroup, WorkerPool, threaded_gather

        async def double(x):
            await asyncio.sleep(0.001)
            return 2 * x

        async def main():
            for mode in SchedulingMode:
                async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
                    futures = [tg.create_task(double(i)) for i in range(10)]
                assert [f.result() for f in futures] == [2 * i for i in range(10)]
                assert await threaded_gather(*(double(i) for i in range(5)), mode=mode) == [0, 2, 4, 6, 8]
            with WorkerPool() as pool:
                assert await threaded_gather(double(1), pool=pool) == [2]
            print("ok")

        asyncio.run(main())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    # asyncio's debug mode (-X dev) reports callbacks slower than 100 ms: on a loaded machine that
    # is the machine, not a warning of the program's; anything else on stderr fails.
    slow = re.compile(r"^Executing <.*> took \d+\.\d+ seconds$")
    assert [line for line in proc.stderr.splitlines() if not slow.match(line)] == [], proc.stderr


def test_import_alone_exits_cleanly(tmp_path):
    proc = run_python(tmp_path, "import thrasks")
    assert proc.returncode == 0
    assert proc.stderr == ""


@forks_after_threads
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork semantics tested on Linux")
@pytest.mark.parametrize("mode", ["ROUND_ROBIN", "QUEUE"])
def test_forked_child_gets_a_fresh_pool_and_works(tmp_path, mode):
    proc = run_python(
        tmp_path,
        f"""
        import asyncio, os, threading, warnings
        from thrasks import SchedulingMode, ThreadedTaskGroup, threaded_gather

        # fork() in a process with threads warns (DeprecationWarning); that is the point here
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
        mode = SchedulingMode.{mode}

        async def square(i):
            await asyncio.sleep(0)
            return i * i, os.getpid()

        async def use_thrasks():
            results = await threaded_gather(*(square(i) for i in range(20)), num_threads=3, mode=mode)
            async with ThreadedTaskGroup(num_threads=3, mode=mode) as tg:
                futures = [tg.create_task(square(i)) for i in range(20)]
            return results, [f.result() for f in futures]

        expected = [i * i for i in range(20)]
        results, group_results = asyncio.run(use_thrasks())       # the parent's pool is busy now
        assert [r for r, _ in results] == expected

        pid = os.fork()
        if pid == 0:
            try:
                results, group_results = asyncio.run(asyncio.wait_for(use_thrasks(), 30))
                ok = ([r for r, _ in results] == expected == [r for r, _ in group_results]
                      and {{p for _, p in results + group_results}} == {{os.getpid()}})
                os._exit(0 if ok else 3)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)

        results, _ = asyncio.run(use_thrasks())      # the parent still works after the fork
        assert [r for r, _ in results] == expected
        print("ok")
        """,
    )
    assert_clean(proc)
    assert proc.stdout == "ok\n"


@forks_after_threads
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork semantics tested on Linux")
def test_fork_while_tasks_are_running_in_the_parent(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import asyncio, os, threading, warnings
        from thrasks import threaded_gather

        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
        started = threading.Event()
        release = threading.Event()

        async def busy():
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
            return "parent"

        runner = threading.Thread(target=lambda: print(asyncio.run(threaded_gather(busy(), busy()))))
        runner.start()
        assert started.wait(10)

        pid = os.fork()
        if pid == 0:
            try:
                got = asyncio.run(asyncio.wait_for(threaded_gather(asyncio.sleep(0, result="child")), 30))
                os._exit(0 if got == ["child"] else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        release.set()
        runner.join(30)
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
        """,
    )
    assert_clean(proc)
    assert proc.stdout == "['parent', 'parent']\n"


@pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="only free-threaded builds can keep the GIL off"
)
def test_gil_stays_disabled_after_import(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import sys
        import thrasks
        print(sys._is_gil_enabled())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "False\n"


@pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="only free-threaded builds can keep the GIL off"
)
def test_gil_stays_disabled_while_running_tasks(tmp_path):
    proc = run_python(
        tmp_path,
        """
        import asyncio, sys
        from thrasks import threaded_gather

        async def probe():
            return sys._is_gil_enabled()

        print(asyncio.run(threaded_gather(probe(), probe(), num_threads=2)), sys._is_gil_enabled())
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[False, False] False\n"


@pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="only free-threaded builds can keep the GIL off"
)
def test_gil_disabled_test_is_not_fooled_by_the_environment():
    """PYTHON_GIL=1 would force the GIL on and hide a module that re-enables it."""
    assert os.environ.get("PYTHON_GIL") in (None, "0")


@forks_after_threads
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="os.fork semantics tested on Linux")
def test_a_forked_child_fails_the_parents_running_tasks_instead_of_hanging(tmp_path):
    """In the child, the parent's workers do not exist: every job they held is finished (with a
    RuntimeError) and the workers report themselves dead, so nothing waits for them forever."""
    proc = run_python(
        tmp_path,
        """
        import asyncio, gc, os, threading, warnings
        from thrasks import WorkerPool, threaded_gather, _core

        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
        started = threading.Event()
        release = threading.Event()
        pool = WorkerPool(2)

        async def busy():
            started.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
            return "parent"

        runner = threading.Thread(target=lambda: print(asyncio.run(threaded_gather(busy(), busy(), pool=pool))))
        runner.start()
        assert started.wait(10)

        pid = os.fork()
        if pid == 0:
            try:
                jobs = [j for j in gc.get_objects() if type(j) is _core.Job]
                ok = (
                    len(jobs) == 2
                    and all(repr(j) == "<thrasks._core.Job done>" for j in jobs)
                    and not any(w.alive for w in pool._workers)
                )
                try:
                    threaded_gather(asyncio.sleep(0), pool=pool)  # no running loop: checked at once
                    ok = False
                except RuntimeError as exc:
                    ok = ok and "before os.fork()" in str(exc)
                os._exit(0 if ok else 3)
            except BaseException:
                import traceback
                traceback.print_exc()
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        release.set()
        runner.join(30)
        pool.shutdown()
        assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)
        """,
    )
    assert_clean(proc)
    assert proc.stdout == "['parent', 'parent']\n"


def test_futures_alive_at_interpreter_teardown_are_freed_without_a_crash(tmp_path):
    """The Future types find their base without the module state, which teardown clears first."""
    proc = run_python(
        tmp_path,
        """
        import asyncio
        from thrasks import ThreadedTaskGroup, threaded_gather

        keep = []

        async def main():
            async with ThreadedTaskGroup(2) as tg:
                fut = tg.create_task(asyncio.sleep(0, "x"))
            gathered = threaded_gather(asyncio.sleep(0, "y"))
            await gathered
            cycle = [fut, gathered]
            cycle.append(cycle)     # a cycle: freed by the GC at teardown, after the module state
            keep.append(cycle)

        asyncio.run(main())
        print("ok")
        """,
    )
    assert_clean(proc)
    assert proc.stdout == "ok\n"
