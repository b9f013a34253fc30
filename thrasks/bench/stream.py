"""The ``map`` row: a stream of items through ``threaded_map``, against the semaphore pattern.

A stream (rows to parse, requests in a queue) cannot go through ``gather``: the work must be
bounded while the items keep coming. What people write today, and what this row compares, is a
semaphore around ``create_task``: acquire before creating each task, release when it is done, so
that at most ``limit`` coroutines exist at a time. All three variants run that bound on the same
items with the same function:

* **baseline**: the semaphore pattern on ``asyncio.TaskGroup``, plain asyncio on one loop;
* **thrasks**: ``threaded_map(parse_row, items, num_threads=N)`` (default ``max_in_flight``, 4N);
* **by hand**: the semaphore pattern on a ``ThreadedTaskGroup(N)``, with the same limit, 4N;
* an extra variant, ``threaded_map(..., ordered=False)``, is in ``--json``.

Every variant returns ``(index, fingerprint)`` pairs, sorted by index where they come unordered,
and they must all equal the baseline's.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any

from thrasks import ThreadedTaskGroup, threaded_map
from thrasks._map import DEFAULT_IN_FLIGHT_PER_THREAD

from .workloads import (
    BASELINE,
    BYHAND,
    THRASKS,
    Coro,
    RowResult,
    RunContext,
    Sizes,
    Variant,
    Workload,
)

__all__ = ["MapWorkload", "make_rows", "parse_row"]

_MOD = (1 << 61) - 1

type Item = tuple[int, str]
type RowFunc = Callable[[Item], Coroutine[Any, Any, tuple[int, int]]]


def make_rows(count: int, width: int) -> list[str]:
    """``count`` JSON rows of ``width`` integers each (deterministic)."""
    return [
        json.dumps(
            {
                "id": i,
                "tag": f"row-{i}",
                "values": [(i * 7919 + k * 104729) % 100_003 for k in range(width)],
            }
        )
        for i in range(count)
    ]


async def parse_row(item: Item, rounds: int) -> tuple[int, int]:
    """Parse one row and fold its values ``rounds`` times into a fingerprint: pure CPU work."""
    index, text = item
    row = json.loads(text)
    acc = row["id"]
    for _ in range(rounds):
        for value in row["values"]:
            acc = (acc * 31 + value) % _MOD
    return index, acc ^ len(row["tag"])


async def semaphore_map_asyncio(func: RowFunc, items: Iterable[Item], limit: int) -> list[Any]:
    """The hand-written bound on one loop: acquire, create the task, release when it is done."""
    sem = asyncio.Semaphore(limit)
    tasks = []
    async with asyncio.TaskGroup() as tg:
        for item in items:
            await sem.acquire()
            task = tg.create_task(func(item))
            task.add_done_callback(lambda _: sem.release())
            tasks.append(task)
    return [t.result() for t in tasks]


async def semaphore_map_thrasks(
    func: RowFunc, items: Iterable[Item], limit: int, threads: int
) -> list[Any]:
    """The same pattern on a ThreadedTaskGroup: what a thrasks user writes without threaded_map."""
    sem = asyncio.Semaphore(limit)
    futures = []
    async with ThreadedTaskGroup(num_threads=threads) as tg:
        for item in items:
            await sem.acquire()
            fut = tg.create_task(func(item))
            fut.add_done_callback(lambda _: sem.release())
            futures.append(fut)
    return [f.result() for f in futures]


async def collect_map(func: RowFunc, items: Iterable[Item], threads: int, ordered: bool) -> list[Any]:
    results = [r async for r in threaded_map(func, items, num_threads=threads, ordered=ordered)]
    return results if ordered else sorted(results)


class MapWorkload(Workload):
    slug = group = "map"
    title_template = (
        "Stream map: {items} JSON rows of {width} ints, fold x {rounds}, at most 4N in flight"
    )
    description = (
        "Each item: json.loads of a row of {width} integers, then {rounds} passes of a polynomial"
        " fold over them (pure CPU). threaded_map vs the semaphore-around-create_task pattern on"
        " asyncio.TaskGroup (baseline) and on ThreadedTaskGroup(N) (by hand), same bound (4N)."
    )
    baseline_label = "asyncio semaphore+TaskGroup"
    full = MappingProxyType({"items": 2000, "width": 40, "rounds": 20})
    quick = MappingProxyType({"items": 40, "width": 8, "rounds": 1})

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:  # not used: the items are a stream
        raise NotImplementedError

    async def measure(self, ctx: RunContext) -> RowResult:
        row = await super().measure(ctx)
        row.notes.append(
            "baseline and by hand are the semaphore-around-create_task pattern (asyncio.TaskGroup /"
            " ThreadedTaskGroup), not gather / run_in_executor; 'unordered' is in --json"
        )
        return row

    def variants(self, ctx: RunContext, executor: ThreadPoolExecutor) -> list[Variant]:
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        rows = make_rows(sizes["items"], sizes["width"])
        func: RowFunc = functools.partial(parse_row, rounds=sizes["rounds"])
        limit = DEFAULT_IN_FLIGHT_PER_THREAD * threads

        def items() -> Iterable[Item]:
            return enumerate(rows)  # a fresh, lazy stream for every run

        return [
            Variant(
                BASELINE,
                f"asyncio.Semaphore({limit}) + TaskGroup",
                lambda: semaphore_map_asyncio(func, items(), limit),
            ),
            Variant(
                THRASKS,
                f"threaded_map({threads})",
                lambda: collect_map(func, items(), threads, ordered=True),
            ),
            Variant(
                BYHAND,
                f"asyncio.Semaphore({limit}) + ThreadedTaskGroup({threads})",
                lambda: semaphore_map_thrasks(func, items(), limit, threads),
            ),
            Variant(
                "unordered",
                f"threaded_map({threads}, ordered=False)",
                lambda: collect_map(func, items(), threads, ordered=False),
            ),
        ]
