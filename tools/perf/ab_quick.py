"""Interleaved A/B of thrasks builds on the hand-off rows, without the by-hand variants.

Each round starts one process per variant (build/variants/NAME first on sys.path; the order
rotates every round). A process measures, interleaved with asyncio in the same process:
  roundtrip : median of CALLS single `await threaded_gather(trivial(), num_threads=1)` vs
              `await asyncio.gather(trivial())` (us, and thrasks/asyncio)
  trivial100: median of G gathers of 100 trivial coroutines, num_threads=2 (ratio asyncio/thrasks)
  trivial10k: median of K gathers of 10,000 (ratio asyncio/thrasks)
  taskgroup1: median of CALLS `async with ThreadedTaskGroup(1)` with one create_task (us)
The parent prints, per variant, the median over rounds and [min - max]. Tool: wall clock
(time.perf_counter), so run it on a machine as quiet as can be had and trust ratios.

    python tools/perf/ab_quick.py --rounds 7 base eager ...
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def trivial(x: int) -> int:
    return x * 2


async def child(calls: int, g100: int, g10k: int) -> dict[str, float]:
    from thrasks import ThreadedTaskGroup, threaded_gather

    perf = time.perf_counter
    for _ in range(100):
        await threaded_gather(trivial(1), num_threads=1)
        await threaded_gather(*(trivial(i) for i in range(100)), num_threads=2)
    rt_t, rt_a, tg_t = [], [], []
    gc.collect()
    for _ in range(calls):
        s = perf(); await threaded_gather(trivial(21), num_threads=1); rt_t.append(perf() - s)
        s = perf(); await asyncio.gather(trivial(21)); rt_a.append(perf() - s)
        s = perf()
        async with ThreadedTaskGroup(1) as tg:
            tg.create_task(trivial(21))
        tg_t.append(perf() - s)
    t100_t, t100_a = [], []
    for _ in range(g100):
        s = perf(); await threaded_gather(*(trivial(i) for i in range(100)), num_threads=2); t100_t.append(perf() - s)
        s = perf(); await asyncio.gather(*(trivial(i) for i in range(100))); t100_a.append(perf() - s)
    t10k_t, t10k_a = [], []
    for _ in range(g10k):
        gc.collect()
        s = perf(); await threaded_gather(*(trivial(i) for i in range(10_000)), num_threads=2); t10k_t.append(perf() - s)
        gc.collect()
        s = perf(); await asyncio.gather(*(trivial(i) for i in range(10_000))); t10k_a.append(perf() - s)
    med = statistics.median
    return {
        "roundtrip_us": med(rt_t) * 1e6, "asyncio_us": med(rt_a) * 1e6, "rt_over_asyncio": med(rt_t) / med(rt_a),
        "taskgroup1_us": med(tg_t) * 1e6,
        "trivial100": med(t100_a) / med(t100_t), "trivial10k": med(t10k_a) / med(t10k_t),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--g100", type=int, default=40)
    ap.add_argument("--g10k", type=int, default=3)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.calls, args.g100, args.g10k))))
        return
    res: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        k = r % len(args.variants)
        for v in args.variants[k:] + args.variants[:k]:
            env = dict(os.environ, PYTHONPATH=str(REPO / "build" / "variants" / v))
            out = subprocess.run(
                [sys.executable, "-P", __file__, "--child", "--calls", str(args.calls), "--g100", str(args.g100),
                 "--g10k", str(args.g10k)], env=env, cwd="/", check=True, capture_output=True, text=True)
            res[v].append(json.loads(out.stdout))
        print(f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    print(f"{args.rounds} interleaved rounds (one process per variant per round); median over rounds [min - max];"
          " tool: wall clock")
    keys = [("roundtrip_us", "round trip us"), ("rt_over_asyncio", "round trip / asyncio.gather"),
            ("taskgroup1_us", "TaskGroup(1) 1 task us"), ("trivial100", "trivial100 ratio"),
            ("trivial10k", "trivial10k ratio")]
    for key, label in keys:
        print(f"\n{label}:")
        for v in args.variants:
            xs = [x[key] for x in res[v]]
            print(f"  {v:14s} {statistics.median(xs):8.2f}  [{min(xs):.2f} - {max(xs):.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
