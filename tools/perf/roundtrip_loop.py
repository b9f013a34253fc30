"""N round trips of one kind, nothing else: the workload for strace -c, callgrind and perf.

    python tools/perf/roundtrip_loop.py KIND N
KIND: gather (await threaded_gather(trivial(), num_threads=1)), taskgroup (ThreadedTaskGroup(1)
with one create_task), asyncio (await asyncio.gather(trivial())), trivial100 / trivial10k (one
threaded_gather of 100 / 10,000 trivial coroutines on 2 threads), idle (sleep N ms).
200 warm-up round trips run first (not for idle); with THRASKS_MARK=1 and a trace build, the
warm-up end is stamped (PY_A) so tools can cut it off.
"""

from __future__ import annotations

import asyncio
import sys

from thrasks import ThreadedTaskGroup, threaded_gather


async def trivial(x: int) -> int:
    return x * 2


async def one(kind: str) -> None:
    if kind == "gather":
        assert await threaded_gather(trivial(21), num_threads=1) == [42]
    elif kind == "taskgroup":
        async with ThreadedTaskGroup(1) as tg:
            f = tg.create_task(trivial(21))
        assert f.result() == 42
    elif kind == "asyncio":
        assert await asyncio.gather(trivial(21)) == [42]
    elif kind == "trivial100":
        await threaded_gather(*(trivial(i) for i in range(100)), num_threads=2)
    elif kind == "trivial10k":
        await threaded_gather(*(trivial(i) for i in range(10_000)), num_threads=2)
    else:
        raise SystemExit(f"unknown kind {kind}")


async def main(kind: str, n: int) -> None:
    if kind == "idle":
        async with ThreadedTaskGroup(2):
            await asyncio.sleep(n / 1000)
        return
    for _ in range(200 if kind not in ("trivial10k",) else 2):
        await one(kind)
    print("warm", file=sys.stderr, flush=True)
    for _ in range(n):
        await one(kind)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
