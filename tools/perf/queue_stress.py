"""QUEUE-mode stress: many gathers of tasks that await first; every worker must get tasks and none may hang.

    python tools/perf/queue_stress.py N   (N gathers, alternately 2 and 3 threads, 10 s timeout each)
"""
import asyncio, sys, time, threading, collections
from thrasks import SchedulingMode, threaded_gather
async def mixed(d, w):
    await asyncio.sleep(d); sum(i*i for i in range(w)); return threading.current_thread().name
async def main():
    c = collections.Counter()
    for i in range(int(sys.argv[1])):
        n = 2 + i % 2
        names = await asyncio.wait_for(threaded_gather(*(mixed(0.001, 3000) for _ in range(7 * n)), num_threads=n, mode=SchedulingMode.QUEUE), 10)
        c[len(set(names))] += 1
    print("distinct workers used per gather:", dict(c))
asyncio.run(main())
