"""One TCP service served from every core: an asyncio server per worker thread, one port.

Every worker thread of a thrasks pool runs its own event loop; each one here runs its own
``asyncio.start_server(..., reuse_port=True)`` on the same port. With ``SO_REUSEPORT`` the kernel
gives every listening socket its own accept queue and spreads new connections over them, so the
connections, and the Python work of their requests, are handled on all the workers at once (in
parallel on a free-threaded interpreter). The servers are started, stopped and drained through
one ``ThreadedTaskGroup``: one server task per worker.

    python examples/multicore_server.py --port 8888 --threads 4
    printf '{"id": 1, "op": "stats", "values": [3, 1, 2]}\\n' | nc -q1 127.0.0.1 8888

The protocol is JSON Lines: one JSON object per line in, one per line out, on a connection kept
open for as many requests as the client likes. Ops: ``stats`` (count, sum, mean, min, max,
median and a fingerprint of ``values``, the fingerprint folded ``rounds`` times: CPU work you can
dial up), ``sleep`` (await ``seconds``, like a call to a database would), ``echo``.

Stopping: ``stop()`` (thread-safe; SIGINT / SIGTERM call it) makes every worker stop accepting,
close the connections that wait for their next request, let the requests being handled finish and
their answers go out, and return. A second signal cancels the servers instead: the connections
are dropped at once. See docs/server.md for the walk-through.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from thrasks import ThreadedTaskGroup, WorkerPool

MOD = (1 << 61) - 1
MAX_SLEEP = 10.0  # seconds: a client cannot park a handler for longer

type Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


# ---- the service: what one request does -----------------------------------------------------------


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
    """Answer one decoded request (runs on the worker that accepted the connection)."""
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
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SLEEP:
            answer["error"] = f"seconds must be a number in 0..{MAX_SLEEP}"
        else:
            await asyncio.sleep(seconds)
            answer["slept"] = seconds
    elif op == "echo":
        answer["echo"] = request.get("data")
    else:
        answer["error"] = f"unknown op {op!r}"
    return answer


async def answer_line(line: bytes, handler: Handler) -> bytes:
    """One request line in, one response line out (a bad line gets an error, not a hang-up)."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        return _encode({"id": None, "error": f"invalid JSON: {exc}"})
    if not isinstance(request, dict):
        return _encode({"id": None, "error": "a request is a JSON object"})
    return _encode(await handler(request))


def _encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


# ---- a stop signal any thread can set and any loop can await ---------------------------------------


class StopSignal:
    """Like ``asyncio.Event``, but set from any thread and awaited on any event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there
                loop.call_soon_threadsafe(_resolve, fut)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._set:
                return
            self._waiters.append((loop, fut))
        await fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# ---- one worker: an asyncio server on its own loop ---------------------------------------------------


@dataclass
class WorkerReport:
    """What one worker did, returned when it has drained."""

    thread: str
    connections: int
    requests: int
    tasks_left: int  # other tasks on the worker's loop after the drain (0 on a pool of its own)


class WorkerServer:
    """The server of one worker thread. Everything in here runs on that worker's loop."""

    def __init__(self, handler: Handler, stop: StopSignal) -> None:
        self.handler = handler
        self.stop = stop
        self.stopping = False
        self.handlers: set[asyncio.Task[None]] = set()  # one per open connection
        self.idle: set[asyncio.Task[None]] = set()  # those waiting for their next request
        self.connections = 0
        self.requests = 0
        self.in_flight = 0  # requests being handled now (read from other threads: a gauge)

    async def run(self, host: str, port: int, listening: Callable[[int], None]) -> WorkerReport:
        server = await asyncio.start_server(self.accept, host, port, reuse_port=True)
        listening(server.sockets[0].getsockname()[1])
        try:
            await self.stop.wait()
        except asyncio.CancelledError:
            # Hard stop (a second signal, or a sibling worker failed): drop every connection.
            server.close()
            self.stopping = True
            for task in self.handlers:
                task.cancel()
            await self.drain(server)
            raise
        # Graceful stop: no new connections; idle connections are closed; busy ones finish the
        # request in hand, send its answer, and close.
        server.close()
        self.stopping = True
        for task in self.idle:
            task.cancel()
        await self.drain(server)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        return WorkerReport(
            threading.current_thread().name, self.connections, self.requests, len(others)
        )

    async def drain(self, server: asyncio.Server) -> None:
        while self.handlers:
            await asyncio.wait(list(self.handlers))
        await server.wait_closed()

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: its handler task is registered at once, so the drain sees it."""
        task = asyncio.get_running_loop().create_task(self.connection(reader, writer))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections += 1
        try:
            while not self.stopping:
                self.idle.add(task)
                try:
                    line = await reader.readline()
                finally:
                    self.idle.discard(task)
                if not line:
                    break  # the client closed the connection
                self.in_flight += 1
                try:
                    writer.write(await answer_line(line, self.handler))
                    await writer.drain()
                finally:
                    self.in_flight -= 1
                self.requests += 1
        except asyncio.CancelledError:
            pass  # closed while idle at a stop (or dropped at a hard stop): end quietly
        except (ConnectionError, ValueError):
            pass  # the client went away, or sent a line over the stream limit
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# ---- the whole service: one server per worker, through a ThreadedTaskGroup ----------------------


class MulticoreServer:
    """Serve one TCP port from ``num_threads`` worker threads.

    ``await serve()`` runs until :meth:`stop` and returns one :class:`WorkerReport` per worker
    once all have drained. With ``pool=None`` it runs on a WorkerPool of its own, shut down (its
    threads joined) before ``serve()`` returns; a pool of your own is left running.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        num_threads: int | None = None,
        handler: Handler = handle_request,
        pool: WorkerPool | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.num_threads = num_threads or os.process_cpu_count() or 1
        self.handler = handler
        self.pool = pool
        self._stop = StopSignal()
        self._workers: list[WorkerServer] = []

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        """Requests being handled right now, over all workers (a gauge: read without locks)."""
        return sum(w.in_flight for w in self._workers)

    def stop(self) -> None:
        """Stop accepting, finish the requests in hand, then let ``serve()`` return.

        Thread-safe and idempotent: call it from a signal handler, another thread or a task.
        """
        self._stop.set()

    async def serve(self, ready: Callable[[int], None] | None = None) -> list[WorkerReport]:
        """Run the servers until :meth:`stop`; ``ready(port)`` is called once all of them listen."""
        loop = asyncio.get_running_loop()
        pool = self.pool if self.pool is not None else WorkerPool(self.num_threads)
        try:
            async with ThreadedTaskGroup(self.num_threads, pool=pool) as tg:
                # The first worker binds the port (an ephemeral one if port=0), then the others
                # bind the same port: each gets a listening socket, hence an accept queue, of its own.
                first_port: asyncio.Future[int] = loop.create_future()
                futures = [tg.create_task(self._worker(first_port, loop, self.port))]
                self.port = await first_port
                listening: list[asyncio.Future[int]] = []
                for _ in range(self.num_threads - 1):
                    listening.append(loop.create_future())
                    futures.append(tg.create_task(self._worker(listening[-1], loop, self.port)))
                await asyncio.gather(*listening)
                if ready is not None:
                    ready(self.port)
            return [f.result() for f in futures]
        finally:
            if self.pool is None:
                await asyncio.to_thread(pool.shutdown)

    async def _worker(
        self, listening: asyncio.Future[int], caller: asyncio.AbstractEventLoop, port: int
    ) -> WorkerReport:
        worker = WorkerServer(self.handler, self._stop)
        self._workers.append(worker)

        def report_port(bound: int) -> None:  # on the worker's thread: hand over to the caller's loop
            caller.call_soon_threadsafe(_set_port, listening, bound)

        return await worker.run(self.host, port, report_port)


def _set_port(fut: asyncio.Future[int], port: int) -> None:
    if not fut.done():
        fut.set_result(port)


# ---- command line: Ctrl-C / SIGTERM drain the service --------------------------------------------


async def main(host: str, port: int, num_threads: int) -> None:
    server = MulticoreServer(host, port, num_threads)
    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    assert serving is not None

    def on_signal(signum: int) -> None:
        if not server.stopping:
            print(f"{signal.strsignal(signum)}: draining (again to drop the connections)", flush=True)
            server.stop()
        else:
            serving.cancel()  # second signal: hard stop

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    def ready(bound: int) -> None:
        print(f"serving on {host}:{bound} from {num_threads} worker threads", flush=True)

    reports = await server.serve(ready)
    for r in reports:
        print(f"  {r.thread}: {r.connections} connections, {r.requests} requests")
    print(f"stopped: {sum(r.requests for r in reports)} requests answered", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A JSON-lines TCP service on every core.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--threads", type=int, default=os.process_cpu_count() or 1)
    args = parser.parse_args()
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main(args.host, args.port, args.threads))
