"""thrasks' benchmark suite: ``python -m thrasks.bench`` (or ``pytest -m benchmark``).

The seed's workloads plus a few more, each run with asyncio alone, with thrasks, and with the
by-hand ``run_in_executor(ThreadPoolExecutor(n), asyncio.run, coro)`` approach, side by side in one
process. ``workloads`` defines the rows and measures them, ``report`` formats the results (text,
JSON, chart), ``__main__`` is the command line. See docs/benchmarks.md for what the numbers mean.
"""

from __future__ import annotations

from .workloads import (
    RowResult,
    RunContext,
    Workload,
    all_workloads,
    select_workloads,
    workload_names,
)

__all__ = [
    "RowResult",
    "RunContext",
    "Workload",
    "all_workloads",
    "select_workloads",
    "workload_names",
]
