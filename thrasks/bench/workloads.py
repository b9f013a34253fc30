"""The benchmark workloads and the harness that measures them.

Every workload is run three ways in the same process and the same run:

* **baseline** -- what asyncio does alone: ``asyncio.gather`` or ``asyncio.TaskGroup`` on the
  caller's loop (for the QUEUE row the baseline is thrasks in ROUND_ROBIN mode instead);
* **thrasks** -- ``threaded_gather`` or ``ThreadedTaskGroup``;
* **by hand** -- what people write today without thrasks: every coroutine goes to a
  ``ThreadPoolExecutor`` through ``loop.run_in_executor(executor, asyncio.run, coro)``. The executor
  is created once per row, outside the timed region, and warmed up (all its threads started).

Repetitions are interleaved (baseline, thrasks, by hand, baseline, thrasks, by hand, ...) so that a
slow phase of the machine hits all three alike, and every result is compared with the baseline's:
a benchmark that computes something else is a bug, not a speed-up.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from thrasks import SchedulingMode, ThreadedTaskGroup, default_pool, threaded_gather

__all__ = [
    "BASELINE",
    "BYHAND",
    "THRASKS",
    "Bar",
    "RowResult",
    "RunContext",
    "Workload",
    "all_workloads",
    "rss_mb",
    "scaling_thread_counts",
    "thread_cpu_seconds",
    "select_workloads",
    "warm_up_pool",
    "workload_names",
]

#: Keys of the three compared variants in :attr:`RowResult.samples`.
BASELINE = "baseline"
THRASKS = "thrasks"
BYHAND = "byhand"

type Coro = Coroutine[Any, Any, Any]
type Runner = Callable[[], Awaitable[Any]]

# Results of the big-integer workloads are reduced modulo a Mersenne prime: still a fingerprint of
# the exact value, but cheap to compare and to print.
_MOD = (1 << 61) - 1


# --------------------------------------------------------------------------------------------------
# The coroutines being benchmarked. They are module-level functions so that every variant runs the
# very same code; only the way they are scheduled differs.
# --------------------------------------------------------------------------------------------------


def _fib(n: int) -> int:
    """Iterative Fibonacci on Python integers (big-integer additions: pure CPU work)."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


async def fib_task(n: int, rounds: int) -> int:
    """CPU-bound: compute ``fib(n)`` ``rounds`` times; returns a fingerprint of the value."""
    value = 0
    for _ in range(rounds):
        value = _fib(n)
    return value % _MOD


async def json_task(data: dict[str, Any], iterations: int) -> int:
    """CPU-bound: serialize and parse ``data`` ``iterations`` times (the seed's JSON workload)."""
    total = 0
    for _ in range(iterations):
        text = json.dumps(data)
        parsed = json.loads(text)
        total += len(text) + len(parsed)
    return total


async def sleep_task(delay: float) -> float:
    """I/O-bound: one ``asyncio.sleep``."""
    await asyncio.sleep(delay)
    return delay


async def blocking_task(delay: float) -> float:
    """Blocking: ``time.sleep`` holds the whole event loop thread (a blocking driver call)."""
    time.sleep(delay)  # noqa: ASYNC251 - blocking on purpose
    return delay


async def mixed_task(delay: float, cpu_work: int) -> tuple[float, int]:
    """Mixed: an I/O wait, then CPU work on the answer."""
    await asyncio.sleep(delay)
    return delay, sum(i * i for i in range(cpu_work))


async def trivial_task(x: int) -> int:
    """Nothing at all: measures pure scheduling overhead."""
    return x * 2


async def api_request(
    request_id: int, delay: float, fib_n: int, json_rounds: int
) -> dict[str, Any]:
    """Real-world style request: network wait, then JSON and Fibonacci work on the response."""
    await asyncio.sleep(delay)
    data = {
        "id": request_id,
        "payload": "x" * 1000,
        "items": [{"value": i, "squared": i * i} for i in range(100)],
    }
    fib_value = await fib_task(fib_n, 1)
    size = 0
    for _ in range(json_rounds):
        text = json.dumps(data)
        size = len(json.loads(text)["items"]) + len(text)
    return {"request_id": request_id, "status": "processed", "fib": fib_value, "size": size}


async def uneven_task(index: int, delay: float) -> int:
    """Uneven workload: a blocking call of ``delay`` seconds (long for some tasks, short for most)."""
    time.sleep(delay)  # noqa: ASYNC251 - blocking on purpose
    return index


# --------------------------------------------------------------------------------------------------
# Measurement context, bars and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """How the suite runs: thread count, repetitions, sizes."""

    threads: int
    repeat: int
    quick: bool = False
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


@dataclass(frozen=True)
class Bar:
    """A performance target from the benchmarks issue (informative: a missed bar never fails).

    ``metric`` says what is compared with ``target``: ``"ratio"`` is baseline median / thrasks
    median (higher is better), ``"slowdown"`` its inverse, thrasks median / baseline median
    (lower is better: "at most 1.5x asyncio's time"), ``"thrasks"`` is thrasks' own median
    (seconds, MB or % of a core, lower is better).
    """

    target: float
    metric: str = "ratio"

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "ratio"

    def value(self, row: RowResult) -> float | None:
        if self.metric == "ratio":
            return row.ratio(THRASKS)
        if self.metric == "slowdown":
            ratio = row.ratio(THRASKS)
            return 1.0 / ratio if ratio else None
        return row.median(THRASKS)

    def met(self, row: RowResult) -> bool | None:
        value = self.value(row)
        if value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target

    def describe(self, unit: str) -> str:
        if self.metric == "ratio":
            return f">= {self.target:g}x"
        if self.metric == "slowdown":
            return f"<= {self.target:g}x asyncio's time"
        if unit == "MB":
            return f"<= {self.target:g} MB"
        if unit == "%":
            return f"<= {self.target:g} % of a core"
        return f"<= {self.target * 1e6:g} us"


@dataclass
class RowResult:
    """One row of the report: the samples of every variant of one workload.

    ``samples`` maps a variant key (:data:`BASELINE`, :data:`THRASKS`, :data:`BYHAND`, or an extra
    key a workload adds) to its measurements: seconds for timed rows, megabytes for ``unit == "MB"``,
    percent of one core for ``unit == "%"`` (CPU time per second of wall time).
    """

    slug: str
    group: str
    title: str
    description: str
    baseline_label: str
    threads: int
    unit: str = "s"
    samples: dict[str, list[float]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    bar: Bar | None = None
    seed_reference: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    wall: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every variant produced the baseline's results."""
        return not self.errors

    def median(self, key: str) -> float | None:
        values = self.samples.get(key)
        return statistics.median(values) if values else None

    def spread(self, key: str) -> tuple[float, float] | None:
        """(min, max) of the samples of ``key``."""
        values = self.samples.get(key)
        return (min(values), max(values)) if values else None

    def ratio(self, key: str) -> float | None:
        """Baseline median / ``key`` median: > 1 means ``key`` is faster than the baseline."""
        if self.unit != "s":
            return None
        base, other = self.median(BASELINE), self.median(key)
        if base is None or other is None or other <= 0:
            return None
        return base / other

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (all samples kept when there are few of them)."""
        variants: dict[str, Any] = {}
        for key, values in self.samples.items():
            ordered = sorted(values)
            entry: dict[str, Any] = {
                "label": self.labels.get(key, key),
                "n": len(values),
                "median": statistics.median(values),
                "min": ordered[0],
                "max": ordered[-1],
                "p10": ordered[len(ordered) // 10],
                "p90": ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)],
            }
            if len(values) <= 50:
                entry["samples"] = list(values)
            if self.unit == "s" and key != BASELINE:
                entry["ratio_vs_baseline"] = self.ratio(key)
            variants[key] = entry
        bar: dict[str, Any] | None = None
        if self.bar is not None:
            bar = {
                "target": self.bar.target,
                "metric": self.bar.metric,
                "text": self.bar.describe(self.unit),
                "value": self.bar.value(self),
                "met": self.bar.met(self),
            }
        return {
            "slug": self.slug,
            "group": self.group,
            "title": self.title,
            "description": self.description,
            "baseline": self.baseline_label,
            "threads": self.threads,
            "unit": self.unit,
            "variants": variants,
            "bar": bar,
            "seed_reference": self.seed_reference,
            "ok": self.ok,
            "errors": list(self.errors),
            "notes": list(self.notes),
            "extra": dict(self.extra),
            "wall_seconds": self.wall,
        }


# --------------------------------------------------------------------------------------------------
# Helpers shared by the workloads
# --------------------------------------------------------------------------------------------------


def make_executor(threads: int) -> ThreadPoolExecutor:
    """A ThreadPoolExecutor with all ``threads`` workers already started and warm.

    The barrier makes each submitted call hold its thread until all of them run, so the executor
    has to start every worker; then each worker runs ``asyncio.run`` once.
    """
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="thrasks-bench-byhand")
    barrier = threading.Barrier(threads)
    for fut in [executor.submit(barrier.wait, 30.0) for _ in range(threads)]:
        fut.result()
    for fut in [executor.submit(asyncio.run, trivial_task(0)) for _ in range(threads * 2)]:
        fut.result()
    return executor


async def gather_by_hand(executor: ThreadPoolExecutor, coros: Sequence[Coro]) -> list[Any]:
    """The by-hand approach: one ``asyncio.run`` per coroutine on an executor thread."""
    loop = asyncio.get_running_loop()
    return list(
        await asyncio.gather(*(loop.run_in_executor(executor, asyncio.run, c) for c in coros))
    )


async def _by_hand_one(executor: ThreadPoolExecutor, coro: Coro) -> Any:
    return await asyncio.get_running_loop().run_in_executor(executor, asyncio.run, coro)


async def taskgroup_by_hand(executor: ThreadPoolExecutor, coros: Sequence[Coro]) -> list[Any]:
    """The by-hand approach inside an ``asyncio.TaskGroup``."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_by_hand_one(executor, c)) for c in coros]
    return [t.result() for t in tasks]


async def taskgroup_asyncio(coros: Sequence[Coro]) -> list[Any]:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c) for c in coros]
    return [t.result() for t in tasks]


async def taskgroup_thrasks(coros: Sequence[Coro], threads: int) -> list[Any]:
    async with ThreadedTaskGroup(num_threads=threads) as tg:
        futures = [tg.create_task(c) for c in coros]
    return [f.result() for f in futures]


def _describe_mismatch(expected: Any, got: Any) -> str:
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{len(got)} results instead of {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            if e != g:
                return f"result {i} is {g!r:.80}, expected {e!r:.80}"
    return f"got {got!r:.80}, expected {expected!r:.80}"


async def warm_up_pool(threads: int) -> None:
    """Start thrasks' persistent workers (and their loops) before anything is timed."""
    for mode in (SchedulingMode.ROUND_ROBIN, SchedulingMode.QUEUE):
        await threaded_gather(
            *(trivial_task(i) for i in range(threads * 8)), num_threads=threads, mode=mode
        )
        # A blocking task per worker makes sure every worker really ran something.
        await threaded_gather(
            *(blocking_task(0.001) for _ in range(threads)), num_threads=threads, mode=mode
        )


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB.

    Reads VmRSS / VmHWM from /proc/self/status; elsewhere falls back to ``getrusage``, which only
    knows the peak (then both values are the peak).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb = peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
        return peak_mb, peak_mb


def thread_cpu_seconds(threads: Sequence[threading.Thread]) -> float:
    """CPU time (user + system, seconds) the given live threads have used so far.

    Reads each thread's own CPU clock (``time.pthread_getcpuclockid``: nanosecond resolution, unlike
    the 10 ms ticks of /proc/*/stat). Where that is missing, falls back to the whole process's
    ``time.process_time()``, which then also counts the other threads.
    """
    getclock = getattr(time, "pthread_getcpuclockid", None)
    if getclock is None:
        return time.process_time()
    total = 0.0
    for thread in threads:
        if thread.ident is None or not thread.is_alive():
            continue
        try:
            total += time.clock_gettime(getclock(thread.ident))
        except OSError:  # the thread ended between the check and the read
            continue
    return total


def scaling_thread_counts(cores: int) -> list[int]:
    """1, 2, 4, ... up to twice the core count (which is always included)."""
    counts, n = [], 1
    while n < 2 * cores:
        counts.append(n)
        n *= 2
    counts.append(2 * cores)
    return counts


# --------------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of running a workload: ``run()`` performs one complete run and returns its results."""

    key: str
    label: str
    run: Runner


type Sizes = Mapping[str, Any]


class Workload:
    """One row of the benchmark: how to run it each way, and how to check the results.

    A subclass sets the class attributes, builds the coroutines of one run in :meth:`make` and, if
    the default asyncio.gather / threaded_gather / by-hand trio does not fit, its own
    :meth:`variants` (the default :meth:`measure` times them interleaved) or its own :meth:`measure`
    (round trip, memory).
    """

    slug: str = ""
    group: str = ""
    title_template: str = ""
    description: str = ""
    baseline_label: str = "asyncio.gather"
    bar: Bar | None = None
    seed_reference: str | None = None
    #: Workload sizes at full size and with ``--quick``: the keys :meth:`make` reads.
    full: ClassVar[Sizes] = MappingProxyType({})
    quick: ClassVar[Sizes] = MappingProxyType({})
    #: Runs of each variant averaged into one sample (for rows too short to time one by one).
    inner_full: int = 1
    #: Run every variant once untimed first (skipped where a run is long and needs no warming).
    warmup: bool = True

    # -- what subclasses customise ----------------------------------------------------------------

    def sizes(self, ctx: RunContext) -> Sizes:
        return self.quick if ctx.quick else self.full

    def threads(self, ctx: RunContext) -> int:
        return ctx.threads

    def title(self, ctx: RunContext) -> str:
        return self.title_template.format(threads=self.threads(ctx), **self.sizes(ctx))

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        """The coroutines of one run (fresh objects on every call)."""
        raise NotImplementedError

    def variants(self, ctx: RunContext, executor: ThreadPoolExecutor) -> list[Variant]:
        """Baseline first. Default: asyncio.gather / threaded_gather / by hand."""
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        return [
            Variant(BASELINE, "asyncio.gather", lambda: asyncio.gather(*self.make(sizes, threads))),
            Variant(
                THRASKS,
                f"threaded_gather({threads})",
                lambda: threaded_gather(*self.make(sizes, threads), num_threads=threads),
            ),
            Variant(
                BYHAND,
                f"run_in_executor({threads})",
                lambda: gather_by_hand(executor, self.make(sizes, threads)),
            ),
        ]

    def new_row(self, ctx: RunContext) -> RowResult:
        return RowResult(
            slug=self.slug,
            group=self.group,
            title=self.title(ctx),
            description=self.description.format(threads=self.threads(ctx), **self.sizes(ctx)),
            baseline_label=self.baseline_label,
            threads=self.threads(ctx),
            bar=self.bar,
            seed_reference=self.seed_reference,
        )

    # -- the harness ------------------------------------------------------------------------------

    async def measure(self, ctx: RunContext) -> RowResult:
        """Time every variant ``ctx.repeat`` times, interleaved, checking every result."""
        row = self.new_row(ctx)
        inner = 1 if ctx.quick else self.inner_full
        executor = make_executor(self.threads(ctx))
        try:
            variants = self.variants(ctx, executor)
            row.labels = {v.key: v.label for v in variants}
            row.samples = {v.key: [] for v in variants}
            if inner > 1:
                row.notes.append(f"each sample is the mean of {inner} back-to-back runs")
            expected: list[Any] | None = None
            if self.warmup:
                expected = list(await variants[0].run())
                for v in variants[1:]:
                    _check(row, v, expected, list(await v.run()))
            for _ in range(ctx.repeat):
                for v in variants:
                    gc.collect()
                    start = time.perf_counter()
                    for _ in range(inner):
                        result = await v.run()
                    row.samples[v.key].append((time.perf_counter() - start) / inner)
                    if expected is None:
                        expected = list(result)
                    else:
                        _check(row, v, expected, list(result))
        finally:
            executor.shutdown(wait=True)
        return row


def _check(row: RowResult, variant: Variant, expected: list[Any], got: list[Any]) -> None:
    """Record (once) that ``variant`` computed something other than the baseline."""
    if got != expected:
        message = f"{variant.label}: {_describe_mismatch(expected, got)}"
        if message not in row.errors:
            row.errors.append(message)


def _fib_coros(sizes: Sizes) -> list[Coro]:
    # n + i: every task has (practically) the same cost but its own result.
    return [fib_task(sizes["n"] + i, sizes["rounds"]) for i in range(sizes["tasks"])]


class JsonWorkload(Workload):
    slug = group = "json"
    title_template = "CPU JSON ({tasks} tasks x {iterations} iterations)"
    description = "json.dumps + json.loads of a small nested dict, {iterations} times per task: pure CPU work."
    bar = Bar(1.85)
    seed_reference = "1.40x"
    full = MappingProxyType({"tasks": 16, "iterations": 2000})
    quick = MappingProxyType({"tasks": 4, "iterations": 5})

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [
            json_task(
                {"id": i, "data": "x" * 100, "nested": {"values": list(range(50))}},
                sizes["iterations"],
            )
            for i in range(sizes["tasks"])
        ]


class FibWorkload(Workload):
    slug = group = "fib"
    title_template = "CPU Fibonacci ({tasks} tasks x {rounds} x fib({n}))"
    description = "Iterative big-integer Fibonacci, every task the same size: pure CPU work."
    bar = Bar(1.85)
    seed_reference = "1.52x"
    full = MappingProxyType({"tasks": 16, "n": 20000, "rounds": 2})
    quick = MappingProxyType({"tasks": 4, "n": 300, "rounds": 1})

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return _fib_coros(sizes)


class TaskGroupWorkload(Workload):
    slug = group = "taskgroup"
    title_template = "TaskGroup CPU Fibonacci ({tasks} tasks x {rounds} x fib({n}))"
    description = "The Fibonacci workload through asyncio.TaskGroup vs ThreadedTaskGroup."
    baseline_label = "asyncio.TaskGroup"
    bar = Bar(1.85)
    full = FibWorkload.full
    quick = FibWorkload.quick

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return _fib_coros(sizes)

    def variants(self, ctx: RunContext, executor: ThreadPoolExecutor) -> list[Variant]:
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        return [
            Variant(
                BASELINE, "asyncio.TaskGroup", lambda: taskgroup_asyncio(self.make(sizes, threads))
            ),
            Variant(
                THRASKS,
                f"ThreadedTaskGroup({threads})",
                lambda: taskgroup_thrasks(self.make(sizes, threads), threads),
            ),
            Variant(
                BYHAND,
                f"TaskGroup + run_in_executor({threads})",
                lambda: taskgroup_by_hand(executor, self.make(sizes, threads)),
            ),
        ]


class ScalingWorkload(Workload):
    """CPU-bound tasks at one thread count; the suite has one of these per count."""

    group = "scaling"
    title_template = "Scaling: {tasks} x fib({n}) on {threads} thread(s)"
    description = "The same CPU-bound tasks on 1, 2, 4, ... threads (up to twice the core count)."
    full = MappingProxyType({"tasks": 32, "n": 20000, "rounds": 1})
    quick = MappingProxyType({"tasks": 4, "n": 300, "rounds": 1})

    def __init__(self, thread_count: int) -> None:
        self.thread_count = thread_count
        self.slug = f"scaling-{thread_count}"

    def threads(self, ctx: RunContext) -> int:
        return self.thread_count

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return _fib_coros(sizes)


class SleepWorkload(Workload):
    slug = group = "io"
    title_template = "I/O asyncio.sleep ({tasks} x {delay_ms} ms)"
    description = (
        "Pure I/O: every task awaits asyncio.sleep; asyncio alone is already optimal here."
    )
    bar = Bar(0.98)
    seed_reference = "0.93x"
    full = MappingProxyType({"tasks": 20, "delay_ms": 50})
    quick = MappingProxyType({"tasks": 4, "delay_ms": 2})
    warmup = False

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [sleep_task(sizes["delay_ms"] / 1000) for _ in range(sizes["tasks"])]


class BlockingWorkload(Workload):
    slug = group = "blocking"
    title_template = "Blocking time.sleep ({tasks} x {delay_ms} ms)"
    description = (
        "time.sleep blocks the event loop: asyncio alone runs the tasks one after another."
    )
    bar = Bar(1.98)
    full = MappingProxyType({"tasks": 20, "delay_ms": 100})
    quick = MappingProxyType({"tasks": 4, "delay_ms": 2})
    warmup = False

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [blocking_task(sizes["delay_ms"] / 1000) for _ in range(sizes["tasks"])]


class MixedWorkload(Workload):
    slug = group = "mixed"
    title_template = "Mixed I/O + CPU ({tasks} x {delay_ms} ms sleep + sum of {cpu_work} squares)"
    description = (
        "Each task awaits asyncio.sleep({delay_ms} ms), then computes a sum of {cpu_work} squares."
    )
    bar = Bar(1.7)
    seed_reference = "1.10x"
    full = MappingProxyType({"tasks": 20, "delay_ms": 10, "cpu_work": 100_000})
    quick = MappingProxyType({"tasks": 4, "delay_ms": 1, "cpu_work": 1000})

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [
            mixed_task(sizes["delay_ms"] / 1000, sizes["cpu_work"] + i)
            for i in range(sizes["tasks"])
        ]


class MixedQueueWorkload(MixedWorkload):
    """The mixed workload in QUEUE mode: tasks that await first must still spread over the
    workers (a worker whose tasks await is free at once; QUEUE balances by load, not by loop
    iterations)."""

    slug = group = "mixed_queue"
    title_template = (
        "Mixed I/O + CPU in QUEUE mode ({tasks} x {delay_ms} ms sleep + sum of {cpu_work} squares)"
    )
    description = (
        "The mixed row with mode=QUEUE: each task awaits asyncio.sleep({delay_ms} ms) first, then"
        " computes. The tasks must spread over the workers by load."
    )
    seed_reference = "(the seed had no load balancing)"

    def variants(self, ctx: RunContext, executor: ThreadPoolExecutor) -> list[Variant]:
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        queue = SchedulingMode.QUEUE
        return [
            Variant(BASELINE, "asyncio.gather", lambda: asyncio.gather(*self.make(sizes, threads))),
            Variant(
                THRASKS,
                f"threaded_gather({threads}, QUEUE)",
                lambda: threaded_gather(*self.make(sizes, threads), num_threads=threads, mode=queue),
            ),
            Variant(
                BYHAND,
                f"run_in_executor({threads})",
                lambda: gather_by_hand(executor, self.make(sizes, threads)),
            ),
        ]


class Trivial100Workload(Workload):
    slug = group = "trivial100"
    title_template = "Trivial tasks ({tasks} tasks)"
    description = "Coroutines that return at once: the fixed cost of dispatching tasks and collecting results."
    bar = Bar(1.0)
    seed_reference = "0.09x"
    full = MappingProxyType({"tasks": 100})
    quick = MappingProxyType({"tasks": 10})
    inner_full = 50

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [trivial_task(i) for i in range(sizes["tasks"])]


class Trivial10kWorkload(Trivial100Workload):
    slug = group = "trivial10k"
    description = (
        "Many coroutines that return at once: the throughput of dispatch (which runs in parallel)."
    )
    bar = Bar(1.6)
    seed_reference = "0.33x"
    full = MappingProxyType({"tasks": 10_000})
    quick = MappingProxyType({"tasks": 200})
    inner_full = 1


class RealWorldWorkload(Workload):
    slug = group = "realworld"
    title_template = "Real world: API + JSON + Fibonacci ({requests} requests)"
    description = (
        "Each request awaits a simulated {delay_ms} ms network call, builds a response, computes"
        " fib({fib_n}) and round-trips the response through JSON {json_rounds} times."
    )
    full = MappingProxyType({"requests": 200, "delay_ms": 50, "fib_n": 5000, "json_rounds": 10})
    quick = MappingProxyType({"requests": 4, "delay_ms": 1, "fib_n": 100, "json_rounds": 1})
    # By hand, every request holds an executor thread through its sleep: one run takes seconds.
    warmup = False

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        return [
            api_request(i, sizes["delay_ms"] / 1000, sizes["fib_n"], sizes["json_rounds"])
            for i in range(sizes["requests"])
        ]


class QueueWorkload(Workload):
    """QUEUE against ROUND_ROBIN on a workload built to defeat round robin.

    With n workers, every n-th task is long: round robin maps task k to worker (k + offset) mod n,
    so ALL the long tasks land on the same worker while the others idle after their short tasks.
    QUEUE lets free workers take the next task, spreading the long ones. The tasks block in
    ``time.sleep`` (a blocking call holds its worker), which keeps the row independent of how busy
    the cores are.
    """

    slug = group = "queue"
    title_template = (
        "QUEUE vs ROUND_ROBIN, uneven: {per_worker} tasks/worker, 1 in {threads} blocks {long_ms} ms,"
        " the rest {short_ms} ms"
    )
    description = (
        "Ratio = ROUND_ROBIN time / QUEUE time. Tasks block in time.sleep; task k is long when"
        " k % {threads} == 0, so round robin puts all the long tasks on one worker."
        " asyncio.gather (sequential) is kept as an extra variant."
    )
    baseline_label = "thrasks RR"
    bar = Bar(1.5)
    seed_reference = "1.20x on the seed's own workload"
    full = MappingProxyType({"per_worker": 8, "long_ms": 40, "short_ms": 4})
    quick = MappingProxyType({"per_worker": 2, "long_ms": 3, "short_ms": 1})
    warmup = False

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:
        long_s, short_s = sizes["long_ms"] / 1000, sizes["short_ms"] / 1000
        return [
            uneven_task(k, long_s if k % threads == 0 else short_s)
            for k in range(sizes["per_worker"] * threads)
        ]

    def variants(self, ctx: RunContext, executor: ThreadPoolExecutor) -> list[Variant]:
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        rr, queue = SchedulingMode.ROUND_ROBIN, SchedulingMode.QUEUE
        return [
            Variant(
                BASELINE,
                f"threaded_gather({threads}, ROUND_ROBIN)",
                lambda: threaded_gather(*self.make(sizes, threads), num_threads=threads, mode=rr),
            ),
            Variant(
                THRASKS,
                f"threaded_gather({threads}, QUEUE)",
                lambda: threaded_gather(
                    *self.make(sizes, threads), num_threads=threads, mode=queue
                ),
            ),
            Variant(
                BYHAND,
                f"run_in_executor({threads})",
                lambda: gather_by_hand(executor, self.make(sizes, threads)),
            ),
            Variant(
                "asyncio", "asyncio.gather", lambda: asyncio.gather(*self.make(sizes, threads))
            ),
        ]


async def _as_list(aw: Awaitable[Any]) -> list[Any]:
    return [await aw]


class RoundTripWorkload(Workload):
    """Latency of one task: ``await threaded_gather(trivial(), num_threads=1)``, median of many."""

    slug = group = "roundtrip"
    title_template = "Single-task round trip (median of {calls} calls)"
    description = (
        "One trivial coroutine per call: from the call to its result back on the caller's loop."
    )
    bar = Bar(1.5, metric="slowdown")
    seed_reference = "2.6 ms (asyncio.gather: 25 us)"
    full = MappingProxyType({"calls_per_repeat": 400, "warmup_calls": 100})
    quick = MappingProxyType({"calls_per_repeat": 10, "warmup_calls": 2})

    def threads(self, ctx: RunContext) -> int:
        return 1

    def title(self, ctx: RunContext) -> str:
        return self.title_template.format(calls=self.sizes(ctx)["calls_per_repeat"] * ctx.repeat)

    async def measure(self, ctx: RunContext) -> RowResult:
        row = self.new_row(ctx)
        sizes = self.sizes(ctx)
        executor = make_executor(1)
        loop = asyncio.get_running_loop()
        variants = [
            Variant(BASELINE, "asyncio.gather(1 task)", lambda: asyncio.gather(trivial_task(21))),
            Variant(
                THRASKS,
                "threaded_gather(1 task, num_threads=1)",
                lambda: threaded_gather(trivial_task(21), num_threads=1),
            ),
            Variant(
                BYHAND,
                "run_in_executor(asyncio.run)",
                lambda: _as_list(loop.run_in_executor(executor, asyncio.run, trivial_task(21))),
            ),
        ]
        row.labels = {v.key: v.label for v in variants}
        row.samples = {v.key: [] for v in variants}
        try:
            for _ in range(sizes["warmup_calls"]):
                for v in variants:
                    await v.run()
            gc.collect()
            perf = time.perf_counter
            for _ in range(sizes["calls_per_repeat"] * ctx.repeat):
                for v in variants:
                    start = perf()
                    result = await v.run()
                    row.samples[v.key].append(perf() - start)
                    _check(row, v, [42], list(result))
        finally:
            executor.shutdown(wait=True)
        row.notes.append(
            "single calls: the max includes GC pauses and scheduler noise; p10/p90 are in --json"
        )
        return row


class MemoryWorkload(Workload):
    """RSS after the first 10% of the tasks vs after all of them: a leak shows as growth."""

    slug = group = "memory"
    title_template = "RSS growth over {total} trivial tasks (after {checkpoint} -> after {total})"
    description = (
        "Batches of {batch} trivial tasks; RSS is read (after gc.collect) once a tenth of the tasks"
        " ran and at the end. The row shows the growth in MB for each way; the peak is in the notes."
    )
    bar = Bar(10.0, metric="thrasks")
    full = MappingProxyType({"total": 100_000, "batch": 1000})
    quick = MappingProxyType({"total": 2000, "batch": 100})

    def title(self, ctx: RunContext) -> str:
        total = self.sizes(ctx)["total"]
        return self.title_template.format(total=total, checkpoint=total // 10)

    async def measure(self, ctx: RunContext) -> RowResult:
        row = self.new_row(ctx)
        row.unit = "MB"
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        total, batch = sizes["total"], sizes["batch"]
        checkpoint = total // 10
        expected = [i * 2 for i in range(batch)]
        executor = make_executor(threads)
        # thrasks first: it is what the bar is about, and it then sees the least-used heap.
        variants = [
            Variant(
                THRASKS,
                f"threaded_gather({threads})",
                lambda: threaded_gather(
                    *(trivial_task(i) for i in range(batch)), num_threads=threads
                ),
            ),
            Variant(
                BASELINE,
                "asyncio.gather",
                lambda: asyncio.gather(*(trivial_task(i) for i in range(batch))),
            ),
            Variant(
                BYHAND,
                f"run_in_executor({threads})",
                lambda: gather_by_hand(executor, [trivial_task(i) for i in range(batch)]),
            ),
        ]
        row.labels = {v.key: v.label for v in variants}
        try:
            for v in variants:
                gc.collect()
                at_checkpoint, _ = rss_mb()
                done, start = 0, time.perf_counter()
                while done < total:
                    _check(row, v, expected, list(await v.run()))
                    done += batch
                    if done - batch < checkpoint <= done:
                        gc.collect()
                        at_checkpoint, _ = rss_mb()
                elapsed = time.perf_counter() - start
                gc.collect()
                at_end, peak = rss_mb()
                row.samples[v.key] = [at_end - at_checkpoint]
                row.extra[v.key] = {
                    f"rss_after_{checkpoint}_mb": round(at_checkpoint, 2),
                    f"rss_after_{total}_mb": round(at_end, 2),
                    "peak_rss_mb": round(peak, 2),
                    "seconds": round(elapsed, 3),
                }
                row.notes.append(
                    f"{v.label}: RSS {at_checkpoint:.1f} MB after {checkpoint} tasks -> {at_end:.1f} MB after"
                    f" {total}; process peak so far {peak:.1f} MB; {total / elapsed:,.0f} tasks/s"
                )
        finally:
            executor.shutdown(wait=True)
        return row


class IdleWorkload(Workload):
    """CPU burned by waiting: what a pool (or a spin before parking) costs when there is no work.

    Every sample is CPU seconds per wall-clock second, in % of one core, read from the threads'
    own CPU clocks over ``seconds`` of waiting:

    * thrasks: the default pool's ``threads`` workers, idle (nothing submitted);
    * group: the caller's thread plus those workers while the caller's loop awaits
      ``asyncio.sleep`` inside a live ``ThreadedTaskGroup`` whose one task awaits an event;
    * baseline: the caller's thread while its loop awaits ``asyncio.sleep`` (asyncio alone);
    * by hand: an idle ``ThreadPoolExecutor`` of the same size.

    All must stay near zero: a wake-up protocol that spins before parking shows here.
    """

    slug = group = "idle"
    title_template = "Idle CPU: {threads} idle workers, {seconds} s of waiting (% of one core)"
    description = (
        "CPU time per second of waiting, in % of one core: the idle pool's {threads} workers (thrasks),"
        " the caller plus workers inside a live ThreadedTaskGroup (group), the caller's loop alone"
        " (baseline), an idle ThreadPoolExecutor (by hand)."
    )
    baseline_label = "asyncio loop"
    bar = Bar(1.0, metric="thrasks")
    full = MappingProxyType({"seconds": 0.5})
    quick = MappingProxyType({"seconds": 0.02})

    async def measure(self, ctx: RunContext) -> RowResult:
        row = self.new_row(ctx)
        row.unit = "%"
        seconds, threads = self.sizes(ctx)["seconds"], self.threads(ctx)
        pool = default_pool()
        pool.ensure(threads)
        workers = list(pool.threads)[:threads]
        caller = [threading.current_thread()]
        executor = make_executor(threads)
        byhand = list(getattr(executor, "_threads", ()))

        async def cpu_percent(watched: Sequence[threading.Thread]) -> float:
            wall0, cpu0 = time.perf_counter(), thread_cpu_seconds(watched)
            await asyncio.sleep(seconds)
            cpu1, wall1 = thread_cpu_seconds(watched), time.perf_counter()
            return 100.0 * (cpu1 - cpu0) / (wall1 - wall0)

        async def in_live_group() -> float:
            release = threading.Event()
            started = threading.Event()

            async def waits() -> None:
                started.set()
                while not release.is_set():  # awaits on its worker's loop, like a task waiting for I/O
                    await asyncio.sleep(seconds / 4)

            async with ThreadedTaskGroup(threads) as tg:
                tg.create_task(waits())
                while not started.is_set():
                    await asyncio.sleep(0.001)
                value = await cpu_percent([*caller, *workers])
                release.set()
            return value

        measures: dict[str, tuple[str, Callable[[], Awaitable[float]]]] = {
            BASELINE: ("asyncio loop awaiting asyncio.sleep", lambda: cpu_percent(caller)),
            THRASKS: (f"idle pool ({threads} workers)", lambda: cpu_percent(workers)),
            "group": ("caller + workers, live ThreadedTaskGroup", in_live_group),
            BYHAND: (f"idle ThreadPoolExecutor({threads})", lambda: cpu_percent(byhand)),
        }
        row.labels = {key: label for key, (label, _) in measures.items()}
        row.samples = {key: [] for key in measures}
        try:
            for _ in range(ctx.repeat):
                for key, (_, run) in measures.items():
                    row.samples[key].append(await run())
        finally:
            executor.shutdown(wait=True)
        group = row.median("group")
        row.notes.append(
            f"caller + {threads} workers inside a live ThreadedTaskGroup: {group:.2f} % of one core"
            " (its one task wakes 4 times per interval); % = CPU seconds / wall seconds x 100, read"
            " from the threads' CPU clocks"
        )
        return row


# --------------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------------


def all_workloads(cores: int | None = None) -> list[Workload]:
    """Every workload in report order (the seed's order, then the additions)."""
    cores = cores or os.cpu_count() or 1
    # These modules import this one: imported here, not at the top.
    from .server import ServerWorkload
    from .stream import MapWorkload

    return [
        JsonWorkload(),
        FibWorkload(),
        SleepWorkload(),
        BlockingWorkload(),
        MixedWorkload(),
        MixedQueueWorkload(),
        TaskGroupWorkload(),
        *(ScalingWorkload(n) for n in scaling_thread_counts(cores)),
        Trivial100Workload(),
        RealWorldWorkload(),
        QueueWorkload(),
        Trivial10kWorkload(),
        RoundTripWorkload(),
        MemoryWorkload(),
        IdleWorkload(),
        MapWorkload(),
        ServerWorkload(),
    ]


def workload_names(cores: int | None = None) -> list[str]:
    """The names ``--only`` accepts: every group, in report order."""
    return list(dict.fromkeys(w.group for w in all_workloads(cores)))


def select_workloads(only: Sequence[str] | None, cores: int | None = None) -> list[Workload]:
    """The workloads whose group (or exact slug, e.g. ``scaling-2``) is in ``only`` (all if empty)."""
    workloads = all_workloads(cores)
    if not only:
        return workloads
    wanted = set(only)
    known = {w.group for w in workloads} | {w.slug for w in workloads}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(workload_names(cores))}"
        )
    return [w for w in workloads if w.group in wanted or w.slug in wanted]
