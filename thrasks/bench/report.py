"""Formatting of benchmark results: the text report, the JSON file and the scaling chart."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .workloads import BASELINE, BYHAND, THRASKS, RowResult, RunContext

__all__ = [
    "PlotUnavailable",
    "collect_meta",
    "fmt_seconds",
    "format_markdown",
    "format_report",
    "plot_unavailable_reason",
    "to_json",
    "write_json",
    "write_plot",
]

#: The conditions the bars of the benchmarks issue were set for.
BAR_CONTEXT = "2 threads on 2 cores, free-threaded CPython 3.13, ratios vs asyncio in the same run"


class PlotUnavailable(RuntimeError):
    """``--plot`` was asked for but matplotlib is not installed."""


# --------------------------------------------------------------------------------------------------
# Context of a run
# --------------------------------------------------------------------------------------------------


def _thrasks_version() -> str:
    try:
        import thrasks

        return str(getattr(thrasks, "__version__", "unknown"))
    except ImportError:  # pragma: no cover - the suite cannot run without thrasks anyway
        return "not importable"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def collect_meta(ctx: RunContext) -> dict[str, Any]:
    """Everything a number must be quoted with: interpreter, GIL, cores, version, date, settings."""
    gil_check = getattr(sys, "_is_gil_enabled", None)
    return {
        "python_version": platform.python_version(),
        "python_build": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": bool(gil_check()) if gil_check is not None else True,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "thrasks_version": _thrasks_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "threads": ctx.threads,
        "repeat": ctx.repeat,
        "quick": ctx.quick,
        "loadavg_start": _loadavg(),
    }


# --------------------------------------------------------------------------------------------------
# Text report
# --------------------------------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    """A duration with a unit that keeps 3-4 significant digits."""
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} us"


def _fmt_value(row: RowResult, value: float | None) -> str:
    if value is None:
        return "-"
    if row.unit == "MB":
        return f"{value:+.1f} MB"
    if row.unit == "%":
        return f"{value:.2f} %"
    return fmt_seconds(value)


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fmt_spread(row: RowResult) -> str:
    """Relative min-max spread ((max - min) / median, in %) of baseline / thrasks / by hand."""
    if row.unit != "s":
        return "-"
    parts = []
    for key in (BASELINE, THRASKS, BYHAND):
        spread, median = row.spread(key), row.median(key)
        if spread is None or not median or len(row.samples[key]) < 2:
            parts.append("-")
        else:
            parts.append(f"{(spread[1] - spread[0]) / median * 100:.0f}")
    return "/".join(parts)


def _fmt_bar(row: RowResult, evaluate: bool = True) -> str:
    if row.bar is None:
        return "-"
    if not evaluate:
        return f"{row.bar.describe(row.unit)} (not judged)"
    met = row.bar.met(row)
    verdict = "n/a" if met is None else ("met" if met else "NOT met")
    return f"{row.bar.describe(row.unit)} {verdict}"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], left: set[int]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [fmt(header), rule, *(fmt(line) for line in body)]


def format_header(meta: dict[str, Any]) -> str:
    gil = "enabled" if meta["gil_enabled"] else "disabled"
    build = "free-threaded" if meta["free_threaded_build"] else "GIL (default)"
    lines = [
        "thrasks benchmark",
        f"  interpreter : {meta['implementation']} {meta['python_version']} ({build} build), {meta['executable']}",
        f"  GIL         : {gil} at runtime",
        f"  cores       : {meta['cpu_count']} (os.cpu_count)",
        f"  thrasks     : {meta['thrasks_version']}",
        f"  date        : {meta['date']}",
        f"  platform    : {meta['platform']}",
        f"  settings    : --threads {meta['threads']} --repeat {meta['repeat']}"
        + (" --quick" if meta["quick"] else ""),
    ]
    load = meta.get("loadavg_start")
    if load is not None:
        end = meta.get("loadavg_end")
        lines.append(
            f"  load avg    : {load[0]:.2f} at start" + (f", {end[0]:.2f} at end" if end else "")
        )
        cores = meta["cpu_count"] or 1
        if max(load[0], end[0] if end else 0.0) > 0.5 * cores:
            lines.append(
                "  WARNING     : the machine was busy during the run; expect noisy numbers"
            )
    if meta["gil_enabled"]:
        lines.append(
            "  NOTE        : the GIL is enabled: threads give concurrency but no CPU parallelism"
        )
    return "\n".join(lines)


def format_table(rows: Sequence[RowResult], judge_bars: bool = True) -> str:
    header = [
        "workload",
        "baseline",
        "base",
        "thrasks",
        "by hand",
        "thrasks x",
        "by hand x",
        "spread % b/t/h",
        "bar",
    ]
    body = [
        [
            row.slug + ("  !" if row.errors else ""),
            row.baseline_label,
            _fmt_value(row, row.median(BASELINE)),
            _fmt_value(row, row.median(THRASKS)),
            _fmt_value(row, row.median(BYHAND)),
            _fmt_ratio(row.ratio(THRASKS)),
            _fmt_ratio(row.ratio(BYHAND)),
            _fmt_spread(row),
            _fmt_bar(row, judge_bars),
        ]
        for row in rows
    ]
    return "\n".join(_table(header, body, left={0, 1, 8}))


def format_legend(rows: Sequence[RowResult]) -> str:
    width = max((len(r.slug) for r in rows), default=0)
    lines = ["Rows:"]
    for row in rows:
        seed = f" [seed: {row.seed_reference}]" if row.seed_reference else ""
        lines.append(f"  {row.slug.ljust(width)}  {row.title}{seed}")
    return "\n".join(lines)


def format_scaling(rows: Sequence[RowResult]) -> str | None:
    scaling = [r for r in rows if r.group == "scaling"]
    if len(scaling) < 2:
        return None
    one = scaling[0].median(THRASKS)
    body = []
    for row in scaling:
        t = row.median(THRASKS)
        body.append(
            [
                str(row.threads),
                _fmt_value(row, t),
                _fmt_ratio(one / t if one and t else None),
                _fmt_ratio(row.ratio(THRASKS)),
                _fmt_ratio(row.ratio(BYHAND)),
            ]
        )
    header = ["threads", "thrasks", "vs 1 thread", "vs asyncio", "by hand vs asyncio"]
    return "\n".join(
        ["Thread scaling (same tasks at every thread count):", *_table(header, body, left=set())]
    )


def format_bars(rows: Sequence[RowResult], meta: dict[str, Any]) -> str:
    with_bar = [r for r in rows if r.bar is not None]
    if not with_bar:
        return ""
    met = [r for r in with_bar if r.bar is not None and r.bar.met(r)]
    lines = [
        f"Bars ({BAR_CONTEXT}): {len(met)} of {len(with_bar)} met (informative; never a failure)"
    ]
    if meta["threads"] != 2 or meta["gil_enabled"] or meta["cpu_count"] != 2:
        lines.append(
            f"  note: this run used {meta['threads']} threads on {meta['cpu_count']} cores with the GIL "
            f"{'enabled' if meta['gil_enabled'] else 'disabled'}; the bars were set for the conditions above"
        )
    for row in with_bar:
        assert row.bar is not None
        value = row.bar.value(row)
        if value is None:
            shown = "-"
        elif row.bar.metric in ("ratio", "slowdown"):
            shown = _fmt_ratio(value)
        else:
            shown = _fmt_value(row, value)
        lines.append(f"  {row.slug:<12} {shown:>10}  {_fmt_bar(row)}")
    return "\n".join(lines)


def format_report(meta: dict[str, Any], rows: Sequence[RowResult]) -> str:
    """The whole text report: header, table, legend, scaling, notes, bars, errors."""
    judge = not meta["quick"]
    parts = [format_header(meta), "", format_table(rows, judge), "", format_legend(rows)]
    columns = (
        "Columns: medians of the interleaved repetitions; 'x' = baseline median / median (> 1 is faster"
        " than the baseline); spread = (max - min) / median of baseline/thrasks/by hand."
    )
    baselines = (
        "Baseline is asyncio.gather (or asyncio.TaskGroup) on the caller's loop, except the queue row"
        " (thrasks ROUND_ROBIN vs QUEUE); 'by hand' = loop.run_in_executor(ThreadPoolExecutor(n),"
        " asyncio.run, coro) per coroutine."
    )
    parts += ["", columns, baselines]
    scaling = format_scaling(rows)
    if scaling:
        parts += ["", scaling]
    notes = [f"  {row.slug}: {note}" for row in rows for note in row.notes]
    if notes:
        parts += ["", "Notes:", *notes]
    bars = format_bars(rows, meta) if judge else "Bars: not judged (--quick sizes are a smoke test)"
    if bars:
        parts += ["", bars]
    errors = [f"  {row.slug}: {error}" for row in rows for error in row.errors]
    if errors:
        parts += ["", "RESULT MISMATCHES OR FAILURES (rows marked '!'):", *errors]
    return "\n".join(parts)


def _fmt_range(row: RowResult, key: str) -> str:
    spread = row.spread(key)
    if spread is None or len(row.samples[key]) < 2:
        return "-"
    return f"{_fmt_value(row, spread[0])} - {_fmt_value(row, spread[1])}"


def format_markdown(meta: dict[str, Any], rows: Sequence[RowResult]) -> str:
    """The results as a Markdown table with its context (for docs/benchmarks.md)."""
    gil = "enabled" if meta["gil_enabled"] else "disabled"
    build = "free-threaded" if meta["free_threaded_build"] else "GIL"
    lines = [
        (
            f"- interpreter: {meta['implementation']} {meta['python_version']} ({build} build),"
            f" GIL {gil} at runtime"
        ),
        f"- cores: {meta['cpu_count']}; threads: {meta['threads']}; repetitions: {meta['repeat']}",
        f"- thrasks {meta['thrasks_version']}; {meta['date']}; {meta['platform']}",
        "",
        (
            "| workload | baseline | baseline time | thrasks | by hand | thrasks ratio"
            " | by-hand ratio | thrasks min - max | bar |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        cells = [
            f"`{row.slug}`" + (" (!)" if row.errors else ""),
            row.baseline_label,
            _fmt_value(row, row.median(BASELINE)),
            _fmt_value(row, row.median(THRASKS)),
            _fmt_value(row, row.median(BYHAND)),
            _fmt_ratio(row.ratio(THRASKS)),
            _fmt_ratio(row.ratio(BYHAND)),
            _fmt_range(row, THRASKS),
            _fmt_bar(row, not meta["quick"]).replace(">=", "&ge;").replace("<=", "&le;"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


def to_json(meta: dict[str, Any], rows: Sequence[RowResult]) -> dict[str, Any]:
    return {
        "meta": meta,
        "bar_context": BAR_CONTEXT,
        "rows": [row.to_dict() for row in rows],
    }


def write_json(
    path: str | os.PathLike[str], meta: dict[str, Any], rows: Sequence[RowResult]
) -> None:
    Path(path).write_text(json.dumps(to_json(meta, rows), indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------------------------------


def plot_unavailable_reason() -> str | None:
    """Why ``--plot`` cannot work here, or None when matplotlib is importable."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (
        "--plot needs matplotlib, which is not installed for "
        f"{sys.executable}; install it with `{sys.executable} -m pip install matplotlib`"
        " (or `pip install 'thrasks[bench]'`), or leave out --plot"
    )


def write_plot(
    path: str | os.PathLike[str], meta: dict[str, Any], rows: Sequence[RowResult]
) -> None:
    """A PNG with the scaling curve (if the scaling rows ran) and the ratio of every timed row."""
    reason = plot_unavailable_reason()
    if reason is not None:
        raise PlotUnavailable(reason)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = [r for r in rows if r.group == "scaling"]
    timed = [
        r for r in rows if r.unit == "s" and r.group != "scaling" and r.ratio(THRASKS) is not None
    ]
    panels = (1 if len(scaling) >= 2 else 0) + (1 if timed else 0)
    if panels == 0:
        raise ValueError("nothing to plot: run the scaling rows or at least one timed row")
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5), squeeze=False)
    ax_iter = iter(axes[0])

    if len(scaling) >= 2:
        ax = next(ax_iter)
        threads = [r.threads for r in scaling]
        cores = meta["cpu_count"] or 1
        ax.plot(threads, [r.ratio(THRASKS) for r in scaling], "o-", label="thrasks")
        ax.plot(
            threads,
            [r.ratio(BYHAND) for r in scaling],
            "s--",
            label="by hand (executor + asyncio.run)",
        )
        ax.plot(
            threads,
            [min(t, cores) for t in threads],
            ":",
            color="gray",
            label=f"ideal ({cores} cores)",
        )
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads, [str(t) for t in threads])
        ax.set_xlabel("threads")
        ax.set_ylabel("speed-up vs asyncio.gather (same run)")
        ax.set_title(scaling[0].title.split(" on ")[0])
        ax.legend()
        ax.grid(True, alpha=0.3)

    if timed:
        ax = next(ax_iter)
        names = [r.slug for r in timed]
        ys = list(range(len(timed)))
        height = 0.38
        ax.barh(
            [y - height / 2 for y in ys],
            [r.ratio(THRASKS) or 0 for r in timed],
            height,
            label="thrasks",
        )
        ax.barh(
            [y + height / 2 for y in ys],
            [r.ratio(BYHAND) or 0 for r in timed],
            height,
            label="by hand",
        )
        for y, row in zip(ys, timed, strict=True):
            if row.bar is not None and row.bar.metric == "ratio":
                ax.plot([row.bar.target] * 2, [y - 0.45, y + 0.45], color="red", linewidth=1.5)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("baseline time / time (log; > 1 is faster; red = bar)")
        ax.set_title("Ratio vs baseline")
        ax.legend(loc="lower right")
        ax.grid(True, axis="x", alpha=0.3)

    gil = "GIL enabled" if meta["gil_enabled"] else "GIL disabled"
    fig.suptitle(
        f"thrasks {meta['thrasks_version']} - Python {meta['python_version']} ({gil}), "
        f"{meta['cpu_count']} cores, {meta['threads']} threads, {meta['date'][:10]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
