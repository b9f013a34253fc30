"""``python -m thrasks.bench``: run the benchmark suite and print the report.

Every row runs asyncio alone, thrasks and the by-hand executor approach side by side in this
process, interleaved, and prints medians, spreads and ratios (see ``--help`` and docs/benchmarks.md).
A missed performance bar is reported, never turned into a failure; the exit code is 1 only when a
variant computed different results from asyncio (or raised), which is a bug, not a slow run.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .report import (
    collect_meta,
    fmt_seconds,
    format_markdown,
    format_report,
    plot_unavailable_reason,
    write_json,
    write_plot,
)
from .workloads import (
    THRASKS,
    RowResult,
    RunContext,
    Workload,
    select_workloads,
    warm_up_pool,
    workload_names,
)

__all__ = ["build_parser", "main", "run_suite"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m thrasks.bench",
        description=(
            "Benchmark thrasks against asyncio.gather / asyncio.TaskGroup and against the by-hand"
            " approach (loop.run_in_executor(ThreadPoolExecutor(n), asyncio.run, coro)), side by side"
            " in one process. Ratios > 1 mean faster than the baseline."
        ),
        epilog=f"workloads: {', '.join(workload_names(cores))}",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=cores,
        metavar="N",
        help=f"worker threads for thrasks and for the by-hand executor (default: os.cpu_count() = {cores})",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        metavar="R",
        help="timed repetitions of every variant, interleaved (default: 5; 1 with --quick)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these workloads (repeatable, or a comma-separated list); see the list below",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write machine-readable results to FILE"
    )
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the table as Markdown to FILE (the format of docs/benchmarks.md)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the scaling curve and the ratios to FILE.png (needs matplotlib)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes: a smoke test of the harness, not a measurement",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help=(
            "watchdog per workload: if one runs longer, print every thread's stack and exit with status 1"
            " instead of hanging (default: 900; 0 disables it)"
        ),
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser


def _split_only(values: Sequence[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _arm_watchdog(timeout: float) -> None:
    """Dump every thread's stack and exit if the current workload runs ``timeout`` seconds."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                faulthandler.dump_traceback_later(timeout, exit=True, file=stream.fileno())
                return
        except (AttributeError, OSError, ValueError):  # no real file descriptor (e.g. captured)
            continue


def _summary(row: RowResult) -> str:
    """One line for the progress output: the row's headline numbers."""
    if row.errors:
        return f"{len(row.errors)} error(s): {row.errors[0]}"
    if row.unit == "MB":
        return ", ".join(f"{key} {values[0]:+.1f} MB" for key, values in row.samples.items())
    if row.unit == "%":
        return ", ".join(
            f"{key} {median:.2f} %" for key in row.samples if (median := row.median(key)) is not None
        )
    parts = [
        f"{key} {fmt_seconds(median)}"
        for key in row.samples
        if (median := row.median(key)) is not None
    ]
    ratio = row.ratio(THRASKS)
    return ", ".join(parts) + (f"; thrasks {ratio:.2f}x" if ratio is not None else "")


async def run_suite(
    workloads: Sequence[Workload], ctx: RunContext, timeout: float = 0.0
) -> list[RowResult]:
    """Warm thrasks' pool up once, then measure every workload in order.

    A workload that raises becomes a row with the error recorded; the others still run. With a
    ``timeout`` (seconds), a workload that hangs makes faulthandler print every thread's stack and
    end the process (exit status 1): a hang is reported, never waited out.
    """
    await warm_up_pool(max([ctx.threads, *(w.threads(ctx) for w in workloads)]))
    rows: list[RowResult] = []
    for index, workload in enumerate(workloads, 1):
        ctx.say(f"[{index}/{len(workloads)}] {workload.slug}: {workload.title(ctx)}")
        if timeout > 0:
            _arm_watchdog(timeout)
        start = time.perf_counter()
        try:
            row = await workload.measure(ctx)
        except Exception as exc:  # noqa: BLE001 - reported in the table, the suite goes on
            row = workload.new_row(ctx)
            row.errors.append(f"raised {type(exc).__name__}: {exc}")
        finally:
            if timeout > 0:
                faulthandler.cancel_dump_traceback_later()
        row.wall = time.perf_counter() - start
        ctx.say(f"      {row.wall:.1f} s: {_summary(row)}")
        rows.append(row)
    return rows


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    if args.list:
        ctx = RunContext(threads=args.threads, repeat=1, quick=args.quick, cores=cores)
        for workload in select_workloads(None, cores):
            print(f"{workload.group:<11} {workload.slug:<12} {workload.title(ctx)}")
        return 0
    try:
        workloads = select_workloads(_split_only(args.only), cores)
    except ValueError as exc:
        parser.error(str(exc))
    if args.plot:
        reason = plot_unavailable_reason()
        if reason is not None:
            parser.error(reason)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    ctx = RunContext(
        threads=args.threads, repeat=repeat, quick=args.quick, cores=cores, progress=_progress
    )
    meta = collect_meta(ctx)
    if args.timeout < 0:
        parser.error("--timeout must be >= 0")
    rows = asyncio.run(run_suite(workloads, ctx, timeout=args.timeout))
    meta.update(collect_meta(ctx) | {"date": meta["date"], "loadavg_start": meta["loadavg_start"]})
    try:
        meta["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        meta["loadavg_end"] = None
    print(format_report(meta, rows), flush=True)
    if args.json:
        write_json(args.json, meta, rows)
        _progress(f"results written to {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(meta, rows), encoding="utf-8")
        _progress(f"Markdown table written to {args.markdown}")
    if args.plot:
        write_plot(args.plot, meta, rows)
        _progress(f"chart written to {args.plot}")
    return 1 if any(row.errors for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
