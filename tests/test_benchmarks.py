"""The benchmark suite itself, tested: every workload once at --quick size, through the same code
path as ``python -m thrasks.bench``, with thrasks' and the by-hand results checked against asyncio's.

Marked ``benchmark``: excluded from the default run, selected with ``pytest -m benchmark``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from thrasks.bench import report
from thrasks.bench.__main__ import main, run_suite
from thrasks.bench.workloads import (
    BASELINE,
    BYHAND,
    THRASKS,
    Bar,
    RowResult,
    RunContext,
    Variant,
    Workload,
    all_workloads,
    rss_mb,
    scaling_thread_counts,
    select_workloads,
    thread_cpu_seconds,
    workload_names,
)

pytestmark = pytest.mark.benchmark

QUICK = RunContext(threads=2, repeat=2, quick=True, cores=2)
SLUGS = [w.slug for w in all_workloads(cores=2)]


def _workload(slug: str) -> Workload:
    (workload,) = [w for w in all_workloads(cores=2) if w.slug == slug]
    return workload


# --------------------------------------------------------------------------------------------------
# Every workload, once, at tiny size
# --------------------------------------------------------------------------------------------------


@pytest.mark.hang_guard(120)
@pytest.mark.parametrize("slug", SLUGS)
async def test_workload_runs_and_matches_asyncio(slug: str) -> None:
    (row,) = await run_suite([_workload(slug)], QUICK)
    assert row.ok, row.errors
    assert row.slug == slug
    for key in (BASELINE, THRASKS, BYHAND):
        assert row.samples[key], f"no samples for {key}"
        assert not any(math.isnan(value) for value in row.samples[key])
    if row.unit == "s":
        # Interleaved repetitions: every variant measured --repeat times (round trip: many calls).
        counts = {len(values) for values in row.samples.values()}
        assert len(counts) == 1
        assert counts.pop() >= QUICK.repeat
        assert all(value > 0 for values in row.samples.values() for value in values)
        assert row.ratio(THRASKS) is not None and row.ratio(BYHAND) is not None
    else:
        assert row.unit in ("MB", "%") and row.ratio(THRASKS) is None
    json.dumps(row.to_dict())  # JSON-ready


@pytest.mark.hang_guard(120)
async def test_a_variant_with_wrong_results_is_reported() -> None:
    """The result check is not vacuous: a variant that computes something else is flagged."""

    class Broken(Workload):
        slug = group = "broken"
        title_template = "broken"

        def make(self, sizes, threads):  # type: ignore[no-untyped-def]
            from thrasks.bench.workloads import trivial_task

            return [trivial_task(i) for i in range(4)]

        def variants(self, ctx, executor):  # type: ignore[no-untyped-def]
            good = super().variants(ctx, executor)

            async def wrong() -> list[int]:
                results = list(await good[1].run())
                results[2] += 1
                return results

            return [good[0], Variant(THRASKS, "wrong thrasks", wrong), good[2]]

    (row,) = await run_suite([Broken()], QUICK)
    assert not row.ok
    assert any("wrong thrasks" in e and "result 2" in e for e in row.errors)
    assert "RESULT MISMATCHES" in report.format_report(report.collect_meta(QUICK), [row])


@pytest.mark.hang_guard(60)
async def test_a_raising_workload_becomes_an_error_row() -> None:
    class Raises(Workload):
        slug = group = "raises"
        title_template = "raises"

        async def measure(self, ctx: RunContext) -> RowResult:
            raise RuntimeError("boom")

    (row,) = await run_suite([Raises()], QUICK)
    assert row.errors == ["raised RuntimeError: boom"]


# --------------------------------------------------------------------------------------------------
# The suite's definition matches the benchmarks issue
# --------------------------------------------------------------------------------------------------


def test_full_sizes_are_the_seed_workloads() -> None:
    w = {x.slug: x for x in all_workloads(cores=2)}
    assert dict(w["json"].full) == {"tasks": 16, "iterations": 2000}
    assert w["fib"].full["tasks"] == 16 and w["taskgroup"].full["tasks"] == 16
    assert dict(w["io"].full) == {"tasks": 20, "delay_ms": 50}
    assert dict(w["blocking"].full) == {"tasks": 20, "delay_ms": 100}
    assert w["mixed"].full["tasks"] == 20
    assert w["trivial100"].full["tasks"] == 100
    assert w["trivial10k"].full["tasks"] == 10_000
    assert w["realworld"].full["requests"] == 200
    assert w["memory"].full["total"] == 100_000
    assert w["taskgroup"].baseline_label == "asyncio.TaskGroup"


def test_bars_are_the_issue_bars() -> None:
    bars = {w.slug: w.bar for w in all_workloads(cores=2) if w.bar is not None}
    assert {slug: (bar.target, bar.metric) for slug, bar in bars.items()} == {
        "json": (1.85, "ratio"),
        "fib": (1.85, "ratio"),
        "taskgroup": (1.85, "ratio"),
        "mixed": (1.7, "ratio"),
        "mixed_queue": (1.7, "ratio"),
        "io": (0.98, "ratio"),
        "blocking": (1.98, "ratio"),
        "trivial100": (1.0, "ratio"),
        "trivial10k": (1.6, "ratio"),
        "roundtrip": (1.5, "slowdown"),
        "queue": (1.5, "ratio"),
        "memory": (10.0, "thrasks"),
        "idle": (1.0, "thrasks"),
    }


def test_queue_workload_puts_every_long_task_on_one_round_robin_worker() -> None:
    queue = _workload("queue")
    for threads in (2, 3, 4):
        coros = queue.make(queue.full, threads)
        delays = [c.cr_frame.f_locals["delay"] for c in coros]
        for c in coros:
            c.close()
        long_ms = queue.full["long_ms"] / 1000
        # Task k goes to worker (k + offset) mod n under round robin: all long ones share k mod n.
        assert {k % threads for k, d in enumerate(delays) if d == long_ms} == {0}
        assert delays.count(long_ms) == queue.full["per_worker"]


@pytest.mark.parametrize(
    ("cores", "expected"), [(1, [1, 2]), (2, [1, 2, 4]), (3, [1, 2, 4, 6]), (8, [1, 2, 4, 8, 16])]
)
def test_scaling_goes_up_to_twice_the_cores(cores: int, expected: list[int]) -> None:
    assert scaling_thread_counts(cores) == expected
    assert [w.slug for w in select_workloads(["scaling"], cores)] == [
        f"scaling-{n}" for n in expected
    ]


def test_only_accepts_groups_slugs_and_rejects_unknown_names() -> None:
    names = workload_names(cores=2)
    assert names[:6] == ["json", "fib", "io", "blocking", "mixed", "taskgroup"]
    for name in (
        "scaling",
        "trivial100",
        "trivial10k",
        "roundtrip",
        "realworld",
        "queue",
        "mixed_queue",
        "memory",
        "idle",
    ):
        assert name in names
    assert [w.slug for w in select_workloads(["fib", "scaling-2"], 2)] == ["fib", "scaling-2"]
    with pytest.raises(ValueError, match="unknown workload"):
        select_workloads(["nope"], 2)


# --------------------------------------------------------------------------------------------------
# Report, JSON, chart, command line
# --------------------------------------------------------------------------------------------------


def _row(
    slug: str, base: list[float], thr: list[float], hand: list[float], bar: Bar | None
) -> RowResult:
    return RowResult(
        slug=slug,
        group=slug,
        title=slug,
        description="",
        baseline_label="asyncio.gather",
        threads=2,
        samples={BASELINE: base, THRASKS: thr, BYHAND: hand},
        bar=bar,
    )


def test_ratio_is_baseline_median_over_candidate_median() -> None:
    row = _row("json", [0.2, 0.3, 0.2], [0.1, 0.1, 0.5], [0.4, 0.4, 0.4], Bar(1.85))
    assert row.ratio(THRASKS) == pytest.approx(2.0)
    assert row.ratio(BYHAND) == pytest.approx(0.5)
    assert row.spread(THRASKS) == (0.1, 0.5)
    assert row.bar is not None and row.bar.met(row) is True
    table = report.format_table([row])
    assert "2.00x" in table and "0.50x" in table and ">= 1.85x met" in table


def test_slowdown_bar_is_thrasks_time_over_asyncios() -> None:
    rt = _row("roundtrip", [20e-6], [40e-6], [200e-6], Bar(1.5, metric="slowdown"))
    assert rt.bar is not None and rt.bar.value(rt) == pytest.approx(2.0) and rt.bar.met(rt) is False
    assert "<= 1.5x asyncio's time NOT met" in report.format_table([rt])
    fast = _row("roundtrip", [20e-6], [25e-6], [200e-6], Bar(1.5, metric="slowdown"))
    assert fast.bar is not None and fast.bar.met(fast) is True


def test_lower_is_better_bars() -> None:
    rt = _row("roundtrip", [20e-6], [70e-6], [200e-6], Bar(60e-6, metric="thrasks"))
    assert rt.bar is not None and rt.bar.met(rt) is False
    assert "<= 60 us NOT met" in report.format_table([rt])
    mem = _row("memory", [0.1], [4.0], [1.0], Bar(10.0, metric="thrasks"))
    mem.unit = "MB"
    assert mem.bar is not None and mem.bar.met(mem) is True and mem.ratio(THRASKS) is None
    assert "+4.0 MB" in report.format_table([mem])


def test_header_states_the_context_of_the_numbers() -> None:
    meta = report.collect_meta(QUICK)
    for key in (
        "python_version",
        "implementation",
        "executable",
        "free_threaded_build",
        "gil_enabled",
        "cpu_count",
        "thrasks_version",
        "date",
    ):
        assert key in meta
    header = report.format_header(meta)
    assert "GIL" in header and "cores" in header and meta["thrasks_version"] in header


@pytest.mark.hang_guard(120)
async def test_idle_row_reports_cpu_percent_of_every_variant() -> None:
    """The idle-cost row (issue 16): a number per variant, in % of one core (no threshold here)."""
    (row,) = await run_suite([_workload("idle")], QUICK)
    assert row.ok, row.errors
    assert row.unit == "%"
    assert set(row.samples) == {BASELINE, THRASKS, BYHAND, "group"}
    for key, values in row.samples.items():
        assert len(values) == QUICK.repeat, key
        assert all(math.isfinite(v) and v >= 0 for v in values), (key, values)
    assert row.bar is not None and row.bar.met(row) is not None
    assert "% of a core" in report.format_table([row])
    assert " %" in report.format_markdown(report.collect_meta(QUICK), [row])


def test_thread_cpu_clock_sees_a_busy_thread() -> None:
    spun = threading.Event()
    done = threading.Event()

    def spin() -> None:
        # spin until the thread's OWN clock says 20 ms (a descheduled thread gets less per
        # wall-clock second on a loaded host), then stay alive for the reading
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.02:
            pass
        spun.set()
        done.wait(60)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        assert spun.wait(60)
        assert thread_cpu_seconds([thread]) > 0.01
    finally:
        done.set()
        thread.join()


def test_rss_is_read() -> None:
    current, peak = rss_mb()
    assert 0 < current <= peak


@pytest.mark.hang_guard(120)
def test_command_line_quick_run_writes_json_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--quick", "--threads", "2", "--only", "trivial100,queue", "--only", "io"]
    assert main([*argv, "--json", str(out), "--markdown", str(md)]) == 0
    text = capsys.readouterr().out
    assert "thrasks benchmark" in text and "workload" in text and "queue" in text
    data = json.loads(out.read_text())
    assert [r["slug"] for r in data["rows"]] == ["io", "trivial100", "queue"]
    assert all(r["ok"] for r in data["rows"])
    assert data["meta"]["threads"] == 2 and data["meta"]["quick"] is True
    assert {"baseline", "thrasks", "byhand", "asyncio"} <= set(data["rows"][2]["variants"])
    table = md.read_text()
    assert "| `queue` | thrasks RR |" in table and "GIL" in table


def test_unknown_only_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "unknown workload(s) nope" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes find_spec() report it missing
    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--only", "trivial100", "--plot", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "pip install" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.hang_guard(120)
def test_plot_draws_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "scaling.png"
    assert main(["--quick", "--only", "scaling,fib", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "thrasks.bench",
            "--quick",
            "--only",
            "trivial100",
            "--threads",
            "2",
        ],
        cwd=tmp_path,  # not the checkout: its thrasks/ has no compiled _core
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "thrasks benchmark" in proc.stdout and "trivial100" in proc.stdout
    assert "[1/1] trivial100" in proc.stderr
