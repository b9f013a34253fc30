"""The allocation-failure sweep of issue 12: thrasks.threaded_gather beside asyncio.gather.

For k in a range, a fresh interpreter warms a 2-worker WorkerPool, makes exactly one allocation
fail (``_testcapi.set_nomemory(k, k + 1)``, process-wide: every thread) around one gather of 8
trivial coroutines, then runs one more gather on the same pool. Each run is classified:

    result        the right result, and the pool works afterwards
    memory_error  a clean MemoryError out of the gather, and the pool works afterwards
    worker_died   a worker's event loop died of the failure (the MemoryError escaped asyncio's own
                  code on that worker); the gather raised thrasks' RuntimeError naming the worker,
                  chained to the MemoryError, and the pool works afterwards (it replaced the worker)
    system_error  SystemError (a C function returned NULL without an exception, or the reverse)
    loop_died     an event loop died: the exception escaped asyncio.run (the caller's loop), or
                  the gather after it failed (the pool did not recover)
    hung          no end after the timeout; where every thread is, from its native stack (gdb)
                  or else its Python stack
    crashed       the interpreter died of a signal

Failures and hangs are attributed by their stacks: for a hang, the innermost native frames of
every thread (gdb; the Python stacks where there is no gdb); for an exception, the frame that
raised it. "no thrasks code" means no frame of the package or of its C core among them.

    python tools/nomemory_sweep.py [--first 0] [--last 149] [--timeout 20] [--markdown]

Needs a CPython with _testcapi (the test command's interpreters have it).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import asyncio, faulthandler, sys, traceback
    import _testcapi
    K, WHICH, TIMEOUT = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    faulthandler.dump_traceback_later(TIMEOUT, exit=True)
    from thrasks import WorkerPool, threaded_gather

    pool = WorkerPool(2)

    async def triv(i):
        return i

    async def gather_once():
        coros = [triv(i) for i in range(8)]
        if WHICH == "thrasks":
            return await threaded_gather(*coros, num_threads=2, pool=pool)
        return await asyncio.gather(*coros)

    def where(exc):
        frames = traceback.extract_tb(exc.__traceback__)
        return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"

    async def main():
        assert await gather_once() == list(range(8))  # warm: workers started, code paths hot
        _testcapi.set_nomemory(K, K + 1)
        outcome = "result"
        try:
            result = await gather_once()
            if result != list(range(8)):
                outcome = "wrong_result"
        except MemoryError as exc:
            outcome = "memory_error"
            print("WHERE", where(exc), flush=True)
        except SystemError as exc:
            outcome = "system_error"
            print("WHERE", where(exc), flush=True)
        except RuntimeError as exc:
            if not isinstance(exc.__cause__, MemoryError):
                raise
            # a worker's loop died of the failure (inside asyncio: the stack shows where); its
            # tasks fail with thrasks' RuntimeError naming the worker, chained to the cause
            outcome = "worker_died"
            print("WHERE", where(exc.__cause__), flush=True)
        finally:
            _testcapi.remove_mem_hooks()
        try:
            assert await gather_once() == list(range(8))
        except BaseException as exc:
            print("AFTER", type(exc).__name__, where(exc), flush=True)
            return "loop_died"
        return outcome

    try:
        print("OUTCOME", asyncio.run(main()), flush=True)
    except BaseException as exc:
        _testcapi.remove_mem_hooks()
        print("OUTCOME", "system_error" if isinstance(exc, SystemError) else "loop_died", flush=True)
        print("WHERE", type(exc).__name__, where(exc), flush=True)
    pool.shutdown(wait=False)
    """
)


def run_one(k: int, which: str, timeout: float) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
            # The child's own faulthandler fires later than our timeout: first we look at its
            # native stacks (a hang in C code, ours or CPython's, has no Python frame to show).
            proc = subprocess.Popen([sys.executable, script, str(k), which, str(timeout + 60)],
                                    cwd=tmp, stdout=out_f, stderr=err_f, text=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                native = native_stacks(proc.pid)
                proc.kill()
                proc.wait()
                with open(err_path) as f:
                    err = f.read()
                return "hung", summarize_hang(native, err)
        with open(out_path) as f:
            out = f.read()
        with open(err_path) as f:
            err = f.read()
    if proc.returncode < 0:
        return "crashed", f"signal {-proc.returncode}: {err.strip().splitlines()[-1:] if err else ''}"
    m = re.search(r"^OUTCOME (\S+)", out, re.M)
    if not m:
        tail = err.strip().splitlines()[-1:] if err.strip() else ["no output"]
        return "crashed", f"exit {proc.returncode}: {tail}"
    detail = " ".join(re.findall(r"^((?:WHERE|AFTER) .*)$", out, re.M))
    return m.group(1), detail


#: A frame of the thrasks package itself (not any path that merely contains the word).
THRASKS_FRAME = re.compile(r"[/\\]thrasks[/\\][^/\\\s\"]+\.py")
#: A native frame of the C core (built with debug info: the source file is named).
THRASKS_NATIVE = re.compile(r"csrc/[a-z_]+\.c:|thrasks/_core\.")
#: How many innermost native frames of a thread count as "where it is".
TOP_FRAMES = 6


def in_thrasks(text: str) -> bool:
    """Whether a traceback, stack dump or WHERE line names a file of the thrasks package."""
    return THRASKS_FRAME.search(text) is not None


def native_stacks(pid: int) -> str:
    """Every thread's native stack (gdb), or "" when gdb is not there or cannot attach."""
    if shutil.which("gdb") is None:
        return ""
    try:
        return subprocess.run(["gdb", "-q", "-batch", "-p", str(pid), "-ex", "thread apply all bt 40"],
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def summarize_hang(native: str, err: str) -> str:
    """Where each thread of a hung child is: its innermost native frames (gdb), else the Python
    stacks of a faulthandler dump. "thrasks code on a stack" when the C core (or the package's
    Python code) is among them; a thread that merely started in thrasks (a worker: its loop runs
    from our C thread function) and now waits in asyncio or CPython does not count."""
    # asyncio reports a callback that raised (e.g. "Exception in callback Task.task_wakeup()":
    # the task it was to step sleeps for good) on stderr: where the hang began
    callbacks = sorted(set(re.findall(r"^Exception in callback (\S+)", err, re.M)))
    began = f"; began with asyncio's 'Exception in callback {', '.join(callbacks)}'" if callbacks else ""
    return summarize_native(native, err) + began


def summarize_native(native: str, err: str) -> str:
    """The innermost frames of every thread (gdb), or the Python stacks (see summarize_hang)."""
    if native:
        tops, ours = [], False
        for block in re.split(r"\n(?=Thread \d+ )", native):
            frames = re.findall(r"^#\d+ .*$", block, re.M)[:TOP_FRAMES]
            if not frames:
                continue
            ours = ours or any(THRASKS_NATIVE.search(f) for f in frames)
            names = [m.group(1) for f in frames if (m := re.search(r" in (\S+) \(", f))]
            tops.append("<".join(names[:3]))
        return ("thrasks code on a stack; " if ours else "no thrasks code on any stack; ") + " | ".join(tops)
    prefix = "thrasks code on a stack; " if in_thrasks(err) else "no thrasks code on any stack (Python stacks only); "
    return prefix + summarize_stacks(err)


def summarize_stacks(text: str) -> str:
    """The innermost Python frame of each thread in a faulthandler dump."""
    threads = re.split(r"\n(?=(?:Thread|Current thread) 0x)", text)
    tops = []
    for block in threads:
        frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', block)
        if frames:
            f, line, fn = frames[0]
            tops.append(f"{os.path.basename(f)}:{line} {fn}")
    return " | ".join(tops[:4])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=149)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--which", choices=["both", "thrasks", "asyncio"], default="both")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = ap.parse_args()
    whichs = ["thrasks", "asyncio"] if args.which == "both" else [args.which]
    counts = {w: collections.Counter() for w in whichs}
    notes = {w: collections.Counter() for w in whichs}
    for k in range(args.first, args.last + 1, args.step):
        for w in whichs:  # interleaved: the machine's state changes equally for both
            outcome, detail = run_one(k, w, args.timeout)
            counts[w][outcome] += 1
            if outcome not in ("result", "memory_error", "worker_died"):
                notes[w][f"{outcome}: {detail}"] += 1
            print(f"k={k:4d} {w:8s} {outcome:13s} {detail}", file=sys.stderr, flush=True)
    outcomes = ["result", "memory_error", "worker_died", "system_error", "loop_died", "hung", "crashed",
                "wrong_result"]
    print()
    if args.markdown:
        print("| outcome | " + " | ".join(whichs) + " |")
        print("|---|" + "---|" * len(whichs))
        for o in outcomes:
            print(f"| {o} | " + " | ".join(str(counts[w][o]) for w in whichs) + " |")
    else:
        for o in outcomes:
            print(f"{o:14s} " + "  ".join(f"{w}={counts[w][o]}" for w in whichs))
    for w in whichs:
        if notes[w]:
            print(f"\n{w}: where the runs that did not end cleanly ended")
            for note, n in notes[w].most_common():
                print(f"  {n:3d} x {note}")


if __name__ == "__main__":
    main()
