"""Draw the benchmark chart (thrasks.bench.report.write_plot) from a Markdown results table.

    python tools/perf/plot_from_table.py docs/benchmarks.md docs/img/benchmarks.png

Reads the first table in the format of `python -m thrasks.bench --markdown` (and the three
context lines before it), turns each row's medians into one-sample rows, and draws the same
chart `--plot` draws. Used when the machine is too busy for a quiet run: the chart then shows the
published table exactly, instead of a noisy new run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from thrasks.bench.report import write_plot
from thrasks.bench.workloads import BASELINE, BYHAND, THRASKS, Bar, RowResult

UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def seconds(cell: str) -> float | None:
    m = re.fullmatch(r"([0-9.]+) (s|ms|us)", cell.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def main(src: str, out: str) -> None:
    text = Path(src).read_text(encoding="utf-8")
    meta = {"gil_enabled": False, "cpu_count": 2, "threads": 2, "python_version": "?",
            "thrasks_version": "?", "date": "?"}
    if m := re.search(r"CPython ([0-9.]+) \(free-threaded build\), GIL (enabled|disabled)", text):
        meta["python_version"], meta["gil_enabled"] = m.group(1), m.group(2) == "enabled"
    if m := re.search(r"- cores: (\d+); threads: (\d+)", text):
        meta["cpu_count"], meta["threads"] = int(m.group(1)), int(m.group(2))
    if m := re.search(r"- thrasks ([0-9.]+); (\S+);", text):
        meta["thrasks_version"], meta["date"] = m.group(1), m.group(2)
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not cells[0].startswith("`"):
            continue
        slug = cells[0].strip("`").split("`")[0]
        base, thr, hand = (seconds(c) for c in cells[2:5])
        if base is None or thr is None or hand is None:
            continue  # memory, idle: not ratios
        group = "scaling" if slug.startswith("scaling-") else slug
        threads = int(slug.split("-")[1]) if group == "scaling" else meta["threads"]
        bar = re.search(r"&ge; ([0-9.]+)x", cells[-1])
        rows.append(RowResult(bar=Bar(float(bar.group(1))) if bar else None,slug=slug, group=group, title="Scaling: 32 x fib(20000)" if group == "scaling" else slug,
                              description="", baseline_label=cells[1], threads=threads,
                              samples={BASELINE: [base], THRASKS: [thr], BYHAND: [hand]}))
    write_plot(out, meta, rows)
    print(f"{out}: {len(rows)} rows from {src} (run of {meta['date']})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
