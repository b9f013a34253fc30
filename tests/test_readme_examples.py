"""Every Python example of the seed README, run as a test.

The code blocks are copied VERBATIM below (``test_examples_are_verbatim_copies_of_the_seed``
checks that against the seed spec when it is around). Fragments that use top-level ``await`` /
``async with`` run as they are (compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``); helpers the
README leaves undefined (``my_coroutine``, ``failing_task_1``, ``process_item``, ``safe_coro``, ...)
get minimal definitions. Where an example prints something deterministic, the output is checked
exactly. The two API-reference blocks are signatures: the real API must accept every parameter
they document, with the same kind and default.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import threading
from pathlib import Path

import pytest

import thrasks

HANG_GUARD = 120 * float(os.environ.get("THRASKS_TIMEOUT_SCALE", "1"))  # seconds; the examples run asyncio.run() themselves, so they run in a thread


def run_example(source: str, namespace: dict | None = None) -> dict:
    """Run a README code block in a fresh namespace and return the namespace.

    A block with top-level ``await`` is compiled with PyCF_ALLOW_TOP_LEVEL_AWAIT, which makes
    ``eval`` return a coroutine: that is run with asyncio.run. The whole run happens in a helper
    thread, so that a hang fails the test instead of blocking the session.
    """
    ns = {"__name__": "readme_example"}
    ns.update(namespace or {})
    code = compile(source, "<seed README>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome: dict = {}

    def target():
        try:
            maybe_coro = eval(code, ns)  # noqa: S307 - the README's own code
            if inspect.iscoroutine(maybe_coro):
                asyncio.run(maybe_coro)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = e

    runner = threading.Thread(target=target, name="readme-example", daemon=True)
    runner.start()
    runner.join(HANG_GUARD)
    if runner.is_alive():
        pytest.fail(f"the example did not finish within {HANG_GUARD} s")
    if "error" in outcome:
        raise outcome["error"]
    return ns


def fragment_namespace(**helpers) -> dict:
    """What the README's fragments take for granted: asyncio and the thrasks names."""
    return {
        "asyncio": asyncio,
        "ThreadedTaskGroup": thrasks.ThreadedTaskGroup,
        "threaded_gather": thrasks.threaded_gather,
        "SchedulingMode": thrasks.SchedulingMode,
        **helpers,
    }


def sum_of_squares_below(n: int) -> int:
    """sum(i * i for i in range(n)), in closed form."""
    return (n - 1) * n * (2 * n - 1) // 6


# ---- the seed README's Python code blocks, verbatim, in order -----------------------------------

QUICK_START_TASKGROUP = r'''
import asyncio
from thrasks import ThreadedTaskGroup, SchedulingMode


async def compute_heavy_task(n: int) -> int:
    """Simulate CPU-bound work."""
    total = sum(i * i for i in range(n))
    return total


async def main():
    # Default: ROUND_ROBIN mode
    async with ThreadedTaskGroup(num_threads=4) as tg:
        # Tasks are distributed round-robin across 4 threads
        task1 = tg.create_task(compute_heavy_task(1000000))
        task2 = tg.create_task(compute_heavy_task(2000000))
        task3 = tg.create_task(compute_heavy_task(3000000))
        task4 = tg.create_task(compute_heavy_task(4000000))

    # All tasks completed - retrieve results
    print(f"Results: {await task1}, {await task2}, {await task3}, {await task4}")

    # QUEUE mode: better for uneven workloads
    async with ThreadedTaskGroup(num_threads=4, mode=SchedulingMode.QUEUE) as tg:
        # Threads pick up tasks as they become available
        tasks = [tg.create_task(compute_heavy_task(i * 1000000)) for i in range(1, 9)]

    results = [await t for t in tasks]
    print(f"Queue mode results: {results}")


asyncio.run(main())
'''

QUICK_START_GATHER = r'''
import asyncio
from thrasks import threaded_gather, SchedulingMode


async def fetch_data(url: str) -> str:
    """Simulate fetching data."""
    await asyncio.sleep(0.1)
    return f"Data from {url}"


async def main():
    # Default: ROUND_ROBIN mode
    results = await threaded_gather(
        fetch_data("https://api1.example.com"),
        fetch_data("https://api2.example.com"),
        fetch_data("https://api3.example.com"),
        fetch_data("https://api4.example.com"),
        num_threads=3,
    )

    print(results)

    # QUEUE mode: optimal for variable task durations
    results = await threaded_gather(
        fetch_data("https://slow-api.example.com"),
        fetch_data("https://fast-api.example.com"),
        fetch_data("https://medium-api.example.com"),
        num_threads=2,
        mode=SchedulingMode.QUEUE,
    )

    print(results)


asyncio.run(main())
'''

ROUND_ROBIN_FRAGMENT = r"""
async with ThreadedTaskGroup(num_threads=4, mode=SchedulingMode.ROUND_ROBIN) as tg:
    # Task 1 -> Thread 0, Task 2 -> Thread 1, Task 3 -> Thread 2, Task 4 -> Thread 3
    # Task 5 -> Thread 0, Task 6 -> Thread 1, ...
    for i in range(100):
        tg.create_task(process_item(i))
"""

QUEUE_FRAGMENT = r"""
async with ThreadedTaskGroup(num_threads=4, mode=SchedulingMode.QUEUE) as tg:
    # Threads automatically pick up tasks as they become available
    # Fast threads will process more tasks than slow threads
    for i in range(100):
        tg.create_task(process_item(i))  # Variable duration tasks
"""

UNEVEN_WORKLOAD = r'''
import asyncio
from thrasks import ThreadedTaskGroup, SchedulingMode


async def variable_task(task_id: int) -> int:
    """Task with variable duration."""
    if task_id % 10 == 0:
        # Every 10th task is slow
        await asyncio.sleep(0.5)
    else:
        await asyncio.sleep(0.05)
    return task_id


async def main():
    # With ROUND_ROBIN, slow tasks may bottleneck their assigned thread
    async with ThreadedTaskGroup(num_threads=4, mode=SchedulingMode.ROUND_ROBIN) as tg:
        tasks = [tg.create_task(variable_task(i)) for i in range(40)]

    # With QUEUE, threads pick up new work immediately, balancing the load
    async with ThreadedTaskGroup(num_threads=4, mode=SchedulingMode.QUEUE) as tg:
        tasks = [tg.create_task(variable_task(i)) for i in range(40)]


asyncio.run(main())
'''

API_THREADED_TASK_GROUP = r'''
class ThreadedTaskGroup:
    """Async context manager for managing tasks across multiple threads."""

    def __init__(
        self,
        num_threads: int = 4,
        *,
        mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
    ) -> None:
        """
        Initialize the threaded task group.

        Args:
            num_threads: Number of threads to use for running tasks.
            mode: Scheduling mode (ROUND_ROBIN or QUEUE).
        """

    def create_task(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> asyncio.Future[T]:
        """
        Create a task from a coroutine and submit it to a thread.

        In ROUND_ROBIN mode: tasks distributed round-robin across threads.
        In QUEUE mode: tasks placed in queue for threads to consume.

        Args:
            coro: The coroutine to run
            name: Optional name for the task
            context: Optional context for the task

        Returns:
            A Future representing the task
        """
'''

API_TASK_GROUP_EXAMPLE = r"""
async with ThreadedTaskGroup(num_threads=4) as tg:
    future1 = tg.create_task(my_coroutine(), name="task1")
    future2 = tg.create_task(another_coroutine())
    # Tasks are automatically awaited on context exit

# Retrieve results after context exit
result1 = await future1
result2 = await future2
"""

API_THREADED_GATHER = r'''
async def threaded_gather(
    *aws: Coroutine[Any, Any, Any] | asyncio.Task[Any],
    num_threads: int = 4,
    return_exceptions: bool = False,
    mode: SchedulingMode = SchedulingMode.ROUND_ROBIN,
) -> list[Any]:
    """
    Run awaitables concurrently across multiple threads.

    If passed coroutines, distributes them across threads using specified mode.
    If passed tasks, behaves like asyncio.gather.

    Args:
        *aws: Awaitables (coroutines or tasks) to run
        num_threads: Number of threads to use (only for coroutines)
        return_exceptions: If True, exceptions are returned as results
        mode: Scheduling mode (ROUND_ROBIN or QUEUE)

    Returns:
        List of results from all awaitables
    """
'''

API_GATHER_EXAMPLE = r"""
# Basic usage
results = await threaded_gather(
    coro1(),
    coro2(),
    coro3(),
    num_threads=2,
)

# With exception handling
results = await threaded_gather(
    safe_coro(),
    might_fail_coro(),
    another_coro(),
    num_threads=3,
    return_exceptions=True,  # Exceptions returned in results
)
"""

CPU_BOUND_JSON = r'''
import asyncio
import json
from thrasks import threaded_gather


async def process_json(data: dict, iterations: int = 1000) -> int:
    """CPU-intensive JSON serialization/deserialization."""
    result = 0
    for _ in range(iterations):
        serialized = json.dumps(data)
        _ = json.loads(serialized)
        result += len(serialized)
    return result


async def main():
    data_chunks = [
        {"id": i, "data": "x" * 100, "nested": {"values": list(range(50))}}
        for i in range(4)
    ]

    # Process all chunks in parallel across threads
    results = await threaded_gather(
        *[process_json(chunk) for chunk in data_chunks],
        num_threads=4,
    )

    print(f"Processed {len(results)} chunks")


asyncio.run(main())
'''

API_REQUESTS_HEAVY_PROCESSING = r'''
import asyncio
import json
from thrasks import ThreadedTaskGroup


async def fibonacci(n: int) -> int:
    """CPU-intensive calculation."""
    if n <= 1:
        return n
    a, b = 0, 1
    for _ in range(2, n + 1):
        a, b = b, a + b
    return b


async def fetch_and_process(request_id: int) -> dict:
    """Fetch data and do heavy processing."""
    # Simulate network fetch
    await asyncio.sleep(0.1)

    # Heavy CPU work (benefits from threading)
    data = {
        "id": request_id,
        "payload": "x" * 1000,
        "items": [{"value": i, "squared": i * i} for i in range(100)],
    }
    fib_result = await fibonacci(5000)

    # Additional JSON processing
    for _ in range(10):
        serialized = json.dumps(data)
        _ = json.loads(serialized)

    return {"request_id": request_id, "status": "processed", "fib": fib_result}


async def main():
    async with ThreadedTaskGroup(num_threads=4) as tg:
        futures = [tg.create_task(fetch_and_process(i)) for i in range(20)]

    results = [await f for f in futures]
    print(f"Processed {len(results)} requests")


asyncio.run(main())
'''

MIXED_WORKLOADS = r'''
import asyncio
from thrasks import ThreadedTaskGroup


async def io_bound_task(n: int) -> str:
    """I/O-bound task."""
    await asyncio.sleep(0.1)
    return f"IO-{n}"


async def cpu_bound_task(n: int) -> int:
    """CPU-bound task."""
    result = sum(i * i for i in range(n * 100000))
    return result


async def main():
    # Mix of I/O and CPU-bound tasks across threads
    async with ThreadedTaskGroup(num_threads=4) as tg:
        io_futures = [tg.create_task(io_bound_task(i)) for i in range(10)]
        cpu_futures = [tg.create_task(cpu_bound_task(i)) for i in range(4)]

    io_results = [await f for f in io_futures]
    cpu_results = [await f for f in cpu_futures]

    print(f"IO results: {io_results}")
    print(f"CPU results: {cpu_results}")


asyncio.run(main())
'''

EXCEPTION_SINGLE_FAILURE = r"""
async def failing_task():
    raise ValueError("Something went wrong")


async def normal_task():
    await asyncio.sleep(1)
    return "success"


try:
    async with ThreadedTaskGroup(num_threads=2) as tg:
        tg.create_task(failing_task())
        tg.create_task(normal_task())
except ValueError as e:
    print(f"Task failed: {e}")
"""

EXCEPTION_GROUP = r"""
try:
    async with ThreadedTaskGroup(num_threads=2) as tg:
        tg.create_task(failing_task_1())
        tg.create_task(failing_task_2())
except ExceptionGroup as eg:
    print(f"Multiple tasks failed: {len(eg.exceptions)} exceptions")
    for exc in eg.exceptions:
        print(f"  - {type(exc).__name__}: {exc}")
"""

GATHER_RAISE_FIRST = r"""
try:
    results = await threaded_gather(
        safe_coro(),
        failing_coro(),
        num_threads=2,
    )
except ValueError as e:
    print(f"Gather failed: {e}")
"""

GATHER_RETURN_EXCEPTIONS = r"""
results = await threaded_gather(
    safe_coro(),
    failing_coro(),
    another_safe_coro(),
    num_threads=2,
    return_exceptions=True,
)

for i, result in enumerate(results):
    if isinstance(result, Exception):
        print(f"Task {i} failed: {result}")
    else:
        print(f"Task {i} succeeded: {result}")
"""

THREAD_COUNT_SELECTION = r"""
import os

# Auto-detect CPU count
num_threads = os.cpu_count() or 4

async with ThreadedTaskGroup(num_threads=num_threads) as tg:
    # Your tasks here
    pass
"""

ALL_BLOCKS = [
    QUICK_START_TASKGROUP, QUICK_START_GATHER, ROUND_ROBIN_FRAGMENT, QUEUE_FRAGMENT,
    UNEVEN_WORKLOAD, API_THREADED_TASK_GROUP, API_TASK_GROUP_EXAMPLE, API_THREADED_GATHER,
    API_GATHER_EXAMPLE, CPU_BOUND_JSON, API_REQUESTS_HEAVY_PROCESSING, MIXED_WORKLOADS,
    EXCEPTION_SINGLE_FAILURE, EXCEPTION_GROUP, GATHER_RAISE_FIRST, GATHER_RETURN_EXCEPTIONS,
    THREAD_COUNT_SELECTION,
]  # fmt: skip

SEED_README = Path(__file__).resolve().parents[2] / "shared" / "spec" / "seed-readme.md"


# ---- the tests ----------------------------------------------------------------------------------


@pytest.mark.skipif(not SEED_README.exists(), reason="the seed spec is not next to this checkout")
def test_examples_are_verbatim_copies_of_the_seed():
    seed_blocks = re.findall(r"```python\n(.*?)```", SEED_README.read_text(), re.S)
    assert [b.removeprefix("\n") for b in ALL_BLOCKS] == seed_blocks


def test_quick_start_task_group(capsys):
    run_example(QUICK_START_TASKGROUP)
    rr = ", ".join(str(sum_of_squares_below(k * 1_000_000)) for k in range(1, 5))
    queue = [sum_of_squares_below(k * 1_000_000) for k in range(1, 9)]
    assert capsys.readouterr().out == f"Results: {rr}\nQueue mode results: {queue}\n"


def test_quick_start_threaded_gather(capsys):
    run_example(QUICK_START_GATHER)
    first = [f"Data from https://api{k}.example.com" for k in range(1, 5)]
    second = [f"Data from https://{k}-api.example.com" for k in ("slow", "fast", "medium")]
    assert capsys.readouterr().out == f"{first}\n{second}\n"


def test_round_robin_fragment_sends_task_k_to_thread_k_mod_4():
    processed = {}
    lock = threading.Lock()

    async def process_item(i):
        await asyncio.sleep(0)
        with lock:
            processed[i] = threading.get_ident()

    run_example(ROUND_ROBIN_FRAGMENT, fragment_namespace(process_item=process_item))
    assert sorted(processed) == list(range(100))
    # "Task 1 -> Thread 0, Task 2 -> Thread 1, ..., Task 5 -> Thread 0, ..."
    assert len({processed[i] for i in range(4)}) == 4
    assert all(processed[i] == processed[i % 4] for i in range(100))


def test_queue_fragment_processes_every_item_on_at_most_4_threads():
    processed = {}
    lock = threading.Lock()

    async def process_item(i):  # "Variable duration tasks"
        await asyncio.sleep(0.001 * (i % 7))
        with lock:
            processed[i] = threading.get_ident()

    run_example(QUEUE_FRAGMENT, fragment_namespace(process_item=process_item))
    assert sorted(processed) == list(range(100))
    assert len(set(processed.values())) <= 4


def test_uneven_workload_example(capsys):
    run_example(UNEVEN_WORKLOAD)
    assert capsys.readouterr().out == ""


def documented_signature(stub_source: str, name: str, method: str | None = None) -> inspect.Signature:
    from contextvars import Context
    from typing import Any, Coroutine, TypeVar

    ns = {
        "asyncio": asyncio,
        "Any": Any,
        "Coroutine": Coroutine,
        "Context": Context,
        "T": TypeVar("T"),
        "SchedulingMode": thrasks.SchedulingMode,
    }
    exec(compile(stub_source, "<seed README>", "exec"), ns)  # noqa: S102
    obj = ns[name]
    return inspect.signature(getattr(obj, method) if method else obj)


def assert_accepts_documented_parameters(real: inspect.Signature, documented: inspect.Signature):
    for name, doc_param in documented.parameters.items():
        if name == "self":
            continue
        assert name in real.parameters, f"missing parameter {name!r}"
        param = real.parameters[name]
        assert param.kind == doc_param.kind, f"{name}: {param.kind} != {doc_param.kind}"
        assert param.default == doc_param.default, f"{name}: {param.default!r} != {doc_param.default!r}"
    extra = [
        p
        for n, p in real.parameters.items()
        if n not in documented.parameters and p.kind is not p.VAR_KEYWORD
    ]
    assert all(p.default is not p.empty for p in extra), f"undocumented required parameters: {extra}"


def test_api_reference_threaded_task_group_init():
    documented = documented_signature(API_THREADED_TASK_GROUP, "ThreadedTaskGroup", "__init__")
    real = inspect.signature(thrasks.ThreadedTaskGroup.__init__)
    assert_accepts_documented_parameters(real, documented)


def test_api_reference_threaded_task_group_create_task():
    documented = documented_signature(API_THREADED_TASK_GROUP, "ThreadedTaskGroup", "create_task")
    real = inspect.signature(thrasks.ThreadedTaskGroup.create_task)
    assert_accepts_documented_parameters(real, documented)


def test_api_reference_threaded_gather():
    documented = documented_signature(API_THREADED_GATHER, "threaded_gather")
    real = inspect.signature(thrasks.threaded_gather)
    assert_accepts_documented_parameters(real, documented)


def test_api_reference_task_group_example():
    async def my_coroutine():
        await asyncio.sleep(0)
        return f"ran as {asyncio.current_task().get_name()}"

    async def another_coroutine():
        return 42

    ns = run_example(
        API_TASK_GROUP_EXAMPLE,
        fragment_namespace(my_coroutine=my_coroutine, another_coroutine=another_coroutine),
    )
    assert ns["result1"] == "ran as task1"
    assert ns["result2"] == 42


def test_api_reference_gather_example():
    async def value(v):
        await asyncio.sleep(0)
        return v

    async def might_fail_coro():
        raise ValueError("might fail")

    ns = run_example(
        API_GATHER_EXAMPLE,
        fragment_namespace(
            coro1=lambda: value(1),
            coro2=lambda: value(2),
            coro3=lambda: value(3),
            safe_coro=lambda: value("safe"),
            might_fail_coro=might_fail_coro,
            another_coro=lambda: value("another"),
        ),
    )
    safe, failed, another = ns["results"]
    assert (safe, another) == ("safe", "another")
    assert isinstance(failed, ValueError) and failed.args == ("might fail",)


def test_cpu_bound_json_example(capsys):
    run_example(CPU_BOUND_JSON)
    assert capsys.readouterr().out == "Processed 4 chunks\n"


def test_api_requests_with_heavy_processing_example(capsys):
    run_example(API_REQUESTS_HEAVY_PROCESSING)
    assert capsys.readouterr().out == "Processed 20 requests\n"


def test_mixed_workloads_example(capsys):
    run_example(MIXED_WORKLOADS)
    io_results = [f"IO-{n}" for n in range(10)]
    cpu_results = [sum_of_squares_below(n * 100000) for n in range(4)]
    assert capsys.readouterr().out == f"IO results: {io_results}\nCPU results: {cpu_results}\n"


def test_exception_handling_single_failure_example(capsys):
    run_example(EXCEPTION_SINGLE_FAILURE, fragment_namespace())
    assert capsys.readouterr().out == "Task failed: Something went wrong\n"


def test_exception_handling_exception_group_example(capsys):
    # Both tasks are made to fail for sure: each waits (blocking its worker, so that the first
    # failure cannot cancel the other first) until both run.
    both_running = threading.Barrier(2, timeout=20)

    async def failing_task_1():
        both_running.wait()
        raise ValueError("first failure")

    async def failing_task_2():
        both_running.wait()
        raise TypeError("second failure")

    run_example(
        EXCEPTION_GROUP,
        fragment_namespace(failing_task_1=failing_task_1, failing_task_2=failing_task_2),
    )
    header, *lines = capsys.readouterr().out.splitlines()
    assert header == "Multiple tasks failed: 2 exceptions"
    assert sorted(lines) == ["  - TypeError: second failure", "  - ValueError: first failure"]


async def safe_coro():
    await asyncio.sleep(0)
    return "safe"


async def failing_coro():
    await asyncio.sleep(0)
    raise ValueError("bad input")


async def another_safe_coro():
    return "also safe"


def test_gather_raise_first_exception_example(capsys):
    run_example(GATHER_RAISE_FIRST, fragment_namespace(safe_coro=safe_coro, failing_coro=failing_coro))
    assert capsys.readouterr().out == "Gather failed: bad input\n"


def test_gather_return_exceptions_example(capsys):
    run_example(
        GATHER_RETURN_EXCEPTIONS,
        fragment_namespace(
            safe_coro=safe_coro, failing_coro=failing_coro, another_safe_coro=another_safe_coro
        ),
    )
    assert capsys.readouterr().out == (
        "Task 0 succeeded: safe\nTask 1 failed: bad input\nTask 2 succeeded: also safe\n"
    )


def test_thread_count_selection_example():
    ns = run_example(THREAD_COUNT_SELECTION, fragment_namespace())
    assert ns["num_threads"] >= 1
