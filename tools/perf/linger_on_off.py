"""WorkerPool(linger=True) against linger=False: the median latency of one single-task
threaded_gather and the process CPU time per call, back to back and with a 300 us busy gap
between calls (the caller computing). 5 rounds, the order of the two pools alternating; the
figures are the median round [min-max]. Run: .venv-ft/bin/python tools/perf/linger_on_off.py"""
import asyncio, statistics, time, thrasks

async def one(): return 1

async def run(pool, n, gap):
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        await thrasks.threaded_gather(one(), num_threads=1, pool=pool)
        lat.append(time.perf_counter() - t)
        if gap:
            end = time.perf_counter() + gap
            while time.perf_counter() < end: pass
    return statistics.median(lat) * 1e6

async def main():
    res = {}
    for rnd in range(5):
        for lg in ((True, False) if rnd % 2 == 0 else (False, True)):
            for gap in (0, 0.0003):
                with thrasks.WorkerPool(2, linger=lg) as pool:
                    await run(pool, 50, gap)
                    c0 = time.process_time(); w0 = time.perf_counter()
                    med = await run(pool, 1000, gap)
                    cpu = (time.process_time() - c0) / 1000 * 1e6
                res.setdefault((lg, gap), []).append((med, cpu))
    for (lg, gap), v in sorted(res.items()):
        meds = sorted(m for m, _ in v); cpus = sorted(c for _, c in v)
        print(f"linger={lg!s:5} gap={gap*1e6:4.0f}us  median latency {meds[2]:6.1f} us [{meds[0]:.1f}-{meds[-1]:.1f}]  CPU/call {cpus[2]:6.1f} us [{cpus[0]:.1f}-{cpus[-1]:.1f}]")
asyncio.run(main())
