"""QUEUE-mode balance: which worker runs which task (issue 16, item 5).

Workload "mixed": T tasks of `await asyncio.sleep(0.01)` then a sum of 100,000 squares; each task
records the name of the thread it ran on. ROUND_ROBIN and QUEUE run interleaved, R times; the
script prints the per-worker task counts of every run and the median (min - max) wall time of each
mode, next to asyncio.gather on one loop. Also the "uneven" workload of the bench's queue row
(blocking tasks, 1 in N long), where QUEUE must stay >= 1.5x faster than ROUND_ROBIN.

    python tools/perf/queue_balance.py [--tasks 20] [--threads 2] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import threading
import time

from thrasks import SchedulingMode, threaded_gather


async def mixed(delay: float, work: int) -> str:
    await asyncio.sleep(delay)
    sum(i * i for i in range(work))
    return threading.current_thread().name


async def uneven(k: int, delay: float) -> str:
    time.sleep(delay)
    return threading.current_thread().name


def dist(names: list[str]) -> str:
    c = collections.Counter(names)
    return "/".join(str(c[k]) for k in sorted(c))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--work", type=int, default=100_000)
    args = ap.parse_args()
    n, t = args.threads, args.tasks
    modes = {"ROUND_ROBIN": SchedulingMode.ROUND_ROBIN, "QUEUE": SchedulingMode.QUEUE}
    await threaded_gather(*(mixed(0.001, 10) for _ in range(4 * n)), num_threads=n)  # warm up
    await threaded_gather(*(mixed(0.001, 10) for _ in range(4 * n)), num_threads=n, mode=SchedulingMode.QUEUE)
    times: dict[str, list[float]] = collections.defaultdict(list)
    dists: dict[str, list[str]] = collections.defaultdict(list)
    for _ in range(args.repeat):
        s = time.perf_counter()
        await asyncio.gather(*(mixed(0.01, args.work) for _ in range(t)))
        times["asyncio"].append(time.perf_counter() - s)
        for name, mode in modes.items():
            s = time.perf_counter()
            names = await threaded_gather(*(mixed(0.01, args.work) for _ in range(t)), num_threads=n, mode=mode)
            times[name].append(time.perf_counter() - s)
            dists[name].append(dist(names))
    print(f"mixed: {t} tasks x (sleep 10 ms + {args.work} squares), {n} threads, {args.repeat} interleaved runs; "
          "tool: wall clock (perf_counter)")
    for name in ["asyncio", *modes]:
        v = [x * 1e3 for x in times[name]]
        extra = f"  per-worker tasks: {' '.join(dists[name])}" if name in dists else ""
        print(f"  {name:12s} {statistics.median(v):6.1f} ms [{min(v):.1f} - {max(v):.1f}]{extra}")
    # the bench's uneven row
    per, long_s, short_s = 8, 0.04, 0.004
    ut: dict[str, list[float]] = collections.defaultdict(list)
    udist: dict[str, list[str]] = collections.defaultdict(list)
    for _ in range(max(3, args.repeat // 2)):
        for name, mode in modes.items():
            s = time.perf_counter()
            names = await threaded_gather(
                *(uneven(k, long_s if k % n == 0 else short_s) for k in range(per * n)), num_threads=n, mode=mode
            )
            ut[name].append(time.perf_counter() - s)
            udist[name].append(dist(names))
    rr, q = statistics.median(ut["ROUND_ROBIN"]), statistics.median(ut["QUEUE"])
    print(f"uneven (bench queue row): RR {rr * 1e3:.1f} ms, QUEUE {q * 1e3:.1f} ms, RR/QUEUE {rr / q:.2f}x; "
          f"QUEUE per-worker: {' '.join(udist['QUEUE'])}")


if __name__ == "__main__":
    asyncio.run(main())
