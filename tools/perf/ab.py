"""Compare builds of thrasks side by side: interleaved processes, repeated, medians and spread.

Each variant is a directory made by tools/perf/build_variant.sh (build/variants/NAME). One round
runs `python -m thrasks.bench --only ROWS --json` once per variant, in order A, B, C, ...; the
order is rotated every round, so a slow phase of the machine hits every variant alike. For each
variant and row the script prints the median over rounds of the row's thrasks ratio (and of the
round trip in us), with min-max.

    python tools/perf/ab.py --rounds 5 --rows roundtrip,trivial100,trivial10k base eager ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_once(variant: str, rows: str, repeat: int, threads: int, extra: list[str]) -> dict[str, dict]:
    path = REPO / "build" / "variants" / variant
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = dict(os.environ, PYTHONPATH=str(path))
        cmd = [sys.executable, "-P", "-m", "thrasks.bench", "--only", rows, "--threads", str(threads),
               "--repeat", str(repeat), "--json", out.name, *extra]
        subprocess.run(cmd, env=env, cwd="/", check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = json.loads(Path(out.name).read_text())
    res = {}
    for row in data["rows"]:
        v = row["variants"]
        res[row["slug"]] = {
            "ratio": v["thrasks"].get("ratio_vs_baseline"),
            "thrasks": v["thrasks"]["median"],
            "baseline": v["baseline"]["median"],
        }
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default="roundtrip,trivial100,trivial10k")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        order = args.variants[r % len(args.variants):] + args.variants[: r % len(args.variants)]
        for v in order:
            results[v].append(run_once(v, args.rows, args.repeat, args.threads, []))
        print(f"round {r + 1}/{args.rounds} done ({os.getloadavg()[0]:.2f} load)", file=sys.stderr, flush=True)
    rows = args.rows.split(",")
    print(f"{args.rounds} interleaved rounds, --repeat {args.repeat} --threads {args.threads}; "
          "median [min - max] over rounds; tool: wall clock (python -m thrasks.bench)")
    for row in rows:
        print(f"\n{row}:")
        for v in args.variants:
            samples = [x[row] for x in results[v] if row in x]
            if row == "roundtrip":
                t = [s["thrasks"] * 1e6 for s in samples]
                b = [s["baseline"] * 1e6 for s in samples]
                ratio = [s["thrasks"] / s["baseline"] for s in samples]
                print(f"  {v:14s} thrasks {statistics.median(t):6.1f} us [{min(t):.1f} - {max(t):.1f}]"
                      f"  asyncio {statistics.median(b):5.1f} us  thrasks/asyncio {statistics.median(ratio):.2f}x"
                      f" [{min(ratio):.2f} - {max(ratio):.2f}]")
            else:
                q = [s["ratio"] for s in samples]
                t = [s["thrasks"] * 1e6 for s in samples]
                print(f"  {v:14s} ratio {statistics.median(q):.2f}x [{min(q):.2f} - {max(q):.2f}]"
                      f"  thrasks {statistics.median(t):8.1f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
