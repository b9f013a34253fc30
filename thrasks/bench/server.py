"""The ``server`` row: requests per second of a small JSON-lines TCP service.

The service is the one of the multi-core server recipe (examples/multicore_server.py,
docs/server.md): one JSON object per line in, one per line out, on keep-alive connections; the
``stats`` op parses the request, computes statistics of a list of numbers and folds a fingerprint
over them, in pure Python. The same server coroutine (:func:`serve_one`) runs in every variant;
only where it runs differs:

* **baseline**: one ``asyncio.start_server`` on the benchmark's own event loop: asyncio alone;
* **thrasks**: one server per worker on the same port (``reuse_port=True``), started and stopped
  through a ``ThreadedTaskGroup(N)`` on a ``WorkerPool(N)`` of the row's own;
* **by hand**: the same without thrasks: N ``threading.Thread``s, each ``asyncio.run(serve_one())``.

The client is a separate process (so it shares no loop and no GIL with the servers): C keep-alive
connections, opened before the clock starts, send R requests in all, one at a time each, and
stop at a deadline (bounded in count and in time). A sample is the client's time for the R
requests; ratio = baseline time / variant time = variant requests per second / baseline's. The
client hashes the answers in request order; every variant must give the hash computed here, in
process, from the same requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import json
import sys
import threading
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any

from thrasks import ThreadedTaskGroup, WorkerPool

from .workloads import BASELINE, BYHAND, THRASKS, Coro, RowResult, RunContext, Sizes, Workload

__all__ = ["CLIENT", "ServerWorkload", "answer_line", "compute_stats", "handle_request", "serve_one"]

HOST = "127.0.0.1"
MOD = (1 << 61) - 1

# ---- the service (the recipe's, same code: tests/test_server_recipe.py compares the answers) ----


def compute_stats(values: list[float], rounds: int) -> dict[str, Any]:
    """Statistics of ``values`` and a fingerprint folded ``rounds`` times (pure Python CPU work)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    fingerprint = n
    for _ in range(rounds):
        for v in values:
            fingerprint = (fingerprint * 1_000_003 + int(v)) % MOD
    total = sum(values)
    return {
        "count": n,
        "sum": total,
        "mean": total / n,
        "min": ordered[0],
        "max": ordered[-1],
        "median": median,
        "fingerprint": fingerprint,
    }


async def handle_request(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    answer: dict[str, Any] = {"id": request.get("id")}
    if op == "stats":
        values = request.get("values")
        rounds = request.get("rounds", 1)
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            answer["error"] = "values must be a list of numbers"
        elif not isinstance(rounds, int) or not 0 <= rounds <= 1000:
            answer["error"] = "rounds must be an int in 0..1000"
        else:
            answer.update(compute_stats(values, rounds))
    elif op == "sleep":
        seconds = request.get("seconds", 0)
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 10.0:
            answer["error"] = "seconds must be a number in 0..10.0"
        else:
            await asyncio.sleep(seconds)
            answer["slept"] = seconds
    elif op == "echo":
        answer["echo"] = request.get("data")
    else:
        answer["error"] = f"unknown op {op!r}"
    return answer


async def answer_line(line: bytes) -> bytes:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return _encode({"id": None, "error": f"invalid JSON: {exc}"})
    if not isinstance(request, dict):
        return _encode({"id": None, "error": "a request is a JSON object"})
    return _encode(await handle_request(request))


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


async def _connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, accepted: list[int]
) -> None:
    accepted[0] += 1  # this server's own counter, on its own loop
    try:
        while line := await reader.readline():
            writer.write(await answer_line(line))
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve_one(
    port: int, reuse_port: bool, listening: Callable[[int], None], stop: Awaitable[Any]
) -> int:
    """One server on the current loop until ``stop`` resolves (the client has hung up by then).

    Returns how many connections it accepted.
    """
    accepted = [0]
    server = await asyncio.start_server(
        functools.partial(_connection, accepted=accepted), HOST, port, reuse_port=reuse_port
    )
    listening(server.sockets[0].getsockname()[1])
    try:
        await stop
    finally:
        server.close()
        await server.wait_closed()
    return accepted[0]


# ---- the client: a separate process --------------------------------------------------------------

#: ``python -c CLIENT HOST PORT CONNECTIONS REQUESTS DEADLINE WIDTH ROUNDS``: prints one JSON line.
CLIENT = r"""
import asyncio, hashlib, json, sys, time

host, port = sys.argv[1], int(sys.argv[2])
connections, total, deadline_s, width, rounds = map(float, sys.argv[3:8])
connections, total, width, rounds = int(connections), int(total), int(width), int(rounds)

def request(i):
    values = [(i * 7919 + k * 104729) % 100_003 for k in range(width)]
    return (json.dumps({"id": i, "op": "stats", "values": values, "rounds": rounds}) + "\n").encode()

async def main():
    lines = [request(i) for i in range(total)]
    answers = [None] * total
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    start = time.perf_counter()
    deadline = start + deadline_s

    async def run(k, reader, writer):
        for i in range(k, total, connections):
            if time.perf_counter() > deadline:
                return
            writer.write(lines[i])
            await writer.drain()
            answers[i] = await reader.readline()

    await asyncio.gather(*(run(k, r, w) for k, (r, w) in enumerate(streams)))
    elapsed = time.perf_counter() - start
    for _, writer in streams:
        writer.close()
    for _, writer in streams:
        await writer.wait_closed()
    done = sum(a is not None for a in answers)
    digest = hashlib.sha256(b"".join(a or b"-\n" for a in answers)).hexdigest()
    print(json.dumps({"elapsed": elapsed, "done": done, "digest": digest}))

asyncio.run(main())
"""


def client_request(i: int, width: int, rounds: int) -> bytes:
    """The client's request ``i`` (the same formula as in :data:`CLIENT`)."""
    values = [(i * 7919 + k * 104729) % 100_003 for k in range(width)]
    return (json.dumps({"id": i, "op": "stats", "values": values, "rounds": rounds}) + "\n").encode()


async def expected_digest(total: int, width: int, rounds: int) -> str:
    """The hash a correct server produces, computed here without any server."""
    answers = [await answer_line(client_request(i, width, rounds)) for i in range(total)]
    return hashlib.sha256(b"".join(answers)).hexdigest()


async def run_client(port: int, sizes: Sizes) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, HOST, str(port), str(sizes["connections"]),
        str(sizes["requests"]), str(sizes["deadline_s"]), str(sizes["width"]), str(sizes["rounds"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(sizes["deadline_s"] + 60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError("the client process did not finish") from None
    if proc.returncode != 0:
        raise RuntimeError(f"the client failed ({proc.returncode}): {err.decode()[-500:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# ---- the three ways to run the server ------------------------------------------------------------


class _Server:
    """One way of running the service: ``start()`` returns the port, ``stop()`` ends it and
    leaves in ``split`` the connections each server accepted."""

    label = ""
    split: list[int]

    async def start(self) -> int:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class _OneLoop(_Server):
    def __init__(self) -> None:
        self.label = "asyncio.start_server, 1 loop"

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = loop.create_future()
        port: asyncio.Future[int] = loop.create_future()
        self.task = asyncio.create_task(serve_one(0, False, port.set_result, self.done))
        return await port

    async def stop(self) -> None:
        self.done.set_result(None)
        self.split = [await self.task]


class _Thrasks(_Server):
    """N servers on N workers, through a ThreadedTaskGroup (the recipe, without its extras)."""

    def __init__(self, pool: WorkerPool, threads: int) -> None:
        self.pool, self.threads = pool, threads
        self.label = f"ThreadedTaskGroup({threads}), reuse_port"

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.stop_event = threading.Event()
        ports: list[asyncio.Future[int]] = [loop.create_future() for _ in range(self.threads)]

        def reporter(fut: asyncio.Future[int]) -> Callable[[int], None]:
            def report(port: int) -> None:  # on a worker thread
                loop.call_soon_threadsafe(fut.set_result, port)

            return report

        async def until_stopped() -> None:
            while not self.stop_event.is_set():  # polled: the row measures serving, not stopping
                await asyncio.sleep(0.005)

        async def run() -> list[int]:
            async with ThreadedTaskGroup(self.threads, pool=self.pool) as tg:
                servers = [tg.create_task(serve_one(0, True, reporter(ports[0]), until_stopped()))]
                port = await ports[0]
                for fut in ports[1:]:
                    servers.append(tg.create_task(serve_one(port, True, reporter(fut), until_stopped())))
            return [f.result() for f in servers]

        self.task = asyncio.create_task(run())
        listening = asyncio.ensure_future(asyncio.gather(*ports))
        waits: list[asyncio.Future[Any]] = [listening, self.task]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not listening.done():  # the group ended first: a server failed to start
            listening.cancel()
            self.task.result()
            raise RuntimeError("the servers stopped before listening")
        return ports[0].result()

    async def stop(self) -> None:
        self.stop_event.set()
        self.split = await self.task


class _ByHand(_Server):
    """N threads, each ``asyncio.run(serve_one(...))``: the recipe without thrasks."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.label = f"{threads} x threading.Thread(asyncio.run), reuse_port"

    async def start(self) -> int:
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.split = [0] * self.threads
        first: list[int] = []
        bound = threading.Event()

        async def until_stopped() -> None:
            while not self.stop_event.is_set():
                await asyncio.sleep(0.005)

        def listening(port: int) -> None:
            first.append(port)
            bound.set()

        def body(
            k: int, port: int, on_listening: Callable[[int], None], started: threading.Event
        ) -> None:
            def ready(p: int) -> None:
                on_listening(p)
                started.set()

            try:
                self.split[k] = asyncio.run(serve_one(port, True, ready, until_stopped()))
            except BaseException as exc:  # reported by stop()
                self.errors.append(exc)
                started.set()

        self.threads_ = [threading.Thread(target=body, args=(0, 0, listening, bound), name="bench-byhand-server-0")]
        self.threads_[0].start()
        await asyncio.to_thread(bound.wait, 30)
        if not first:
            raise RuntimeError(f"the first server thread did not start: {self.errors}")
        events = []
        for k in range(1, self.threads):
            started = threading.Event()
            events.append(started)
            thread = threading.Thread(
                target=body, args=(k, first[0], lambda p: None, started), name=f"bench-byhand-server-{k}"
            )
            self.threads_.append(thread)
            thread.start()
        for started in events:
            await asyncio.to_thread(started.wait, 30)
        return first[0]

    async def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads_:
            await asyncio.to_thread(thread.join)
        if self.errors:
            raise self.errors[0]


class ServerWorkload(Workload):
    slug = group = "server"
    title_template = (
        "JSON-lines TCP service: {requests} requests of {width} numbers (fold x {rounds}),"
        " {connections} keep-alive connections"
    )
    description = (
        "A client process sends {requests} 'stats' requests over {connections} connections (one"
        " request at a time each); the server parses the JSON, sorts and folds {width} numbers"
        " {rounds} times, answers JSON. 1 asyncio loop vs N reuse_port servers."
    )
    baseline_label = "asyncio, 1 loop"
    full = MappingProxyType(
        {"requests": 4000, "connections": 32, "width": 100, "rounds": 8, "deadline_s": 120}
    )
    quick = MappingProxyType(
        {"requests": 60, "connections": 4, "width": 10, "rounds": 1, "deadline_s": 30}
    )

    def make(self, sizes: Sizes, threads: int) -> list[Coro]:  # not used: the work is requests
        raise NotImplementedError

    async def measure(self, ctx: RunContext) -> RowResult:
        row = self.new_row(ctx)
        sizes, threads = self.sizes(ctx), self.threads(ctx)
        expected = [await expected_digest(sizes["requests"], sizes["width"], sizes["rounds"])]
        pool = WorkerPool(threads)
        variants: list[tuple[str, _Server]] = [
            (BASELINE, _OneLoop()),
            (THRASKS, _Thrasks(pool, threads)),
            (BYHAND, _ByHand(threads)),
        ]
        row.labels = {key: server.label for key, server in variants}
        row.samples = {key: [] for key, _ in variants}
        splits: dict[str, list[list[int]]] = {key: [] for key, _ in variants}
        try:
            for _ in range(ctx.repeat):
                for key, server in variants:
                    gc.collect()
                    port = await server.start()
                    try:
                        result = await run_client(port, sizes)
                    finally:
                        await server.stop()
                    row.samples[key].append(result["elapsed"])
                    splits[key].append(sorted(server.split, reverse=True))
                    if result["done"] != sizes["requests"]:
                        row.errors.append(
                            f"{server.label}: {result['done']} of {sizes['requests']} requests"
                            f" answered before the {sizes['deadline_s']} s deadline"
                        )
                    elif [result["digest"]] != expected:
                        message = f"{server.label}: answers differ from the in-process ones"
                        if message not in row.errors:
                            row.errors.append(message)
        finally:
            await asyncio.to_thread(pool.shutdown)
        for key, server in variants:
            median = row.median(key)
            if median:
                row.notes.append(f"{server.label}: {sizes['requests'] / median:,.0f} requests/s")
        for key, server in variants[1:]:
            shown = ", ".join("/".join(map(str, split)) for split in splits[key])
            row.notes.append(f"{server.label}: connections per server in each run: {shown}")
        row.extra["connections_per_server"] = splits
        row.notes.append(
            "SO_REUSEPORT spreads connections over the servers by a hash, not by load; a connection"
            f" stays where it landed, so the busiest server sets the time (an even split is"
            f" {sizes['connections'] / threads:g} each)"
        )
        return row
