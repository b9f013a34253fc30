"""The multi-core server recipe (examples/multicore_server.py, docs/server.md), run for real.

The example's server runs on an ephemeral loopback port; a client on the test's loop sends
requests and checks the answers against an independent oracle (``statistics``); then the server
is stopped and must have drained: the request in hand answered, idle connections closed, every
worker's loop left without tasks, the recipe's own worker threads gone. The Ctrl-C path runs the
example as a script and sends it SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "multicore_server.py"
MOD = (1 << 61) - 1

if not EXAMPLE.exists():  # e.g. the tests copied without the examples (cibuildwheel)
    pytest.skip(f"{EXAMPLE} is not here", allow_module_level=True)


@pytest.fixture(scope="module")
def recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("multicore_server", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["multicore_server"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Client:
    """One keep-alive connection speaking JSON lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: Any) -> None:
        raw = request if isinstance(request, bytes) else (json.dumps(request) + "\n").encode()
        self.writer.write(raw)
        await self.writer.drain()

    async def receive(self) -> dict[str, Any]:
        line = await self.reader.readline()
        assert line, "the server closed the connection instead of answering"
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def request(self, request: Any) -> dict[str, Any]:
        await self.send(request)
        return await self.receive()

    async def closed_by_server(self) -> bool:
        return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def oracle(values: list[int], rounds: int) -> dict[str, Any]:
    """What ``stats`` must answer, computed another way."""
    fingerprint = len(values)
    for _ in range(rounds):
        for v in values:
            fingerprint = (fingerprint * 1_000_003 + v) % MOD
    return {
        "count": len(values),
        "sum": sum(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
        "fingerprint": fingerprint,
    }


async def start(server: Any) -> tuple[asyncio.Task[Any], int]:
    """Run ``server.serve()`` in a task; return it and the port once every worker listens."""
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(server.serve(ready.set_result))
    await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        task.result()  # serve() failed: raise its error
        pytest.fail("serve() returned before listening")
    return task, ready.result()


def new_worker_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Worker threads started since ``before`` (the default pool's have the same names)."""
    return [t for t in threading.enumerate() if t not in before and t.name.startswith("thrasks-worker-")]


async def test_answers_from_every_worker_then_stops_and_drains(recipe):
    before = set(threading.enumerate())
    server = recipe.MulticoreServer(num_threads=2)
    serving, port = await start(server)
    assert len(new_worker_threads(before)) == 2  # the recipe's own pool
    clients = [await Client.connect(port) for _ in range(12)]
    for k, client in enumerate(clients):
        for r in range(3):
            values = [(k * 31 + r * 7 + i * 13) % 101 for i in range(5 + k)]
            answer = await client.request({"id": [k, r], "op": "stats", "values": values, "rounds": 3})
            assert answer == {"id": [k, r], **oracle(values, 3)}
    server.stop()
    for client in clients:  # idle connections are closed by the drain
        assert await client.closed_by_server()
        await client.close()
    reports = await serving
    assert len(reports) == 2
    assert len({r.thread for r in reports}) == 2  # one server per worker thread
    assert sum(r.connections for r in reports) == 12
    assert sum(r.requests for r in reports) == 36
    assert [r.tasks_left for r in reports] == [0, 0]
    # the recipe's own pool was shut down: its threads are gone, the port is free
    assert new_worker_threads(before) == []
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(port)


async def test_stop_lets_the_request_in_hand_finish_and_closes_idle_connections(recipe, pool):
    entered = threading.Event()
    release = threading.Event()

    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "slow":
            entered.set()
            while not release.is_set():
                await asyncio.sleep(0.001)
            return {"id": request["id"], "slow": "done"}
        answer: dict[str, Any] = await recipe.handle_request(request)
        return answer

    server = recipe.MulticoreServer(num_threads=2, handler=handler, pool=pool)
    serving, port = await start(server)
    busy, idle = await Client.connect(port), await Client.connect(port)
    assert await idle.request({"id": 1, "op": "echo", "data": "hi"}) == {"id": 1, "echo": "hi"}
    await busy.send({"id": 2, "op": "slow"})
    assert await asyncio.to_thread(entered.wait, 20)
    assert server.in_flight == 1
    server.stop()
    assert await idle.closed_by_server()  # waiting for its next request: closed at once
    assert not serving.done()  # still draining the request in hand
    release.set()
    assert await busy.receive() == {"id": 2, "slow": "done"}  # answered...
    assert await busy.closed_by_server()  # ...then closed
    reports = await serving
    assert sum(r.requests for r in reports) == 2 and [r.tasks_left for r in reports] == [0, 0]
    assert not pool.closed  # a pool of your own is left running
    for client in (busy, idle):
        await client.close()


async def test_bad_requests_get_error_answers_and_the_connection_stays_open(recipe):
    server = recipe.MulticoreServer(num_threads=1)
    serving, port = await start(server)
    client = await Client.connect(port)
    assert "invalid JSON" in (await client.request(b"{nope\n"))["error"]
    assert (await client.request(b"[1, 2]\n"))["error"] == "a request is a JSON object"
    assert (await client.request({"id": 3, "op": "fly"}))["error"] == "unknown op 'fly'"
    bad_values = await client.request({"id": 4, "op": "stats", "values": ["x"]})
    assert bad_values == {"id": 4, "error": "values must be a list of numbers"}
    assert (await client.request({"id": 5, "op": "sleep", "seconds": 1e9}))["error"].startswith("seconds")
    assert await client.request({"id": 6, "op": "stats", "values": []}) == {"id": 6, "count": 0}
    server.stop()
    assert await client.closed_by_server()
    await client.close()
    assert sum(r.requests for r in await serving) == 6


async def test_cancelling_serve_is_a_hard_stop(recipe):
    entered = threading.Event()

    async def handler(request: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        await asyncio.sleep(3600)
        return {}

    server = recipe.MulticoreServer(num_threads=2, handler=handler)
    serving, port = await start(server)
    client = await Client.connect(port)
    await client.send({"id": 1, "op": "anything"})
    assert await asyncio.to_thread(entered.wait, 20)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert await client.closed_by_server()  # dropped without an answer
    await client.close()
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(port)


async def test_a_port_in_use_is_reported_and_nothing_is_left_running(recipe):
    with socket.socket() as taken:  # listening, without SO_REUSEPORT: nobody can share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = recipe.MulticoreServer(port=taken.getsockname()[1], num_threads=2)
        with pytest.raises(OSError):
            await server.serve()


def test_sigint_drains_and_exits(tmp_path):
    """The example as a script: Ctrl-C (SIGINT) drains, prints the totals, exits 0."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0", "--threads", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("serving on 127.0.0.1:"), first
        port = int(first.split(":")[1].split()[0])

        async def one_request() -> dict[str, Any]:
            client = await Client.connect(port)
            try:
                return await client.request({"id": 7, "op": "stats", "values": [4, 1, 3]})
            finally:
                await client.close()

        assert asyncio.run(one_request()) == {"id": 7, **oracle([4, 1, 3], 1)}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "draining" in out and "stopped: 1 requests answered" in out, out


async def test_the_benchmark_serves_the_same_answers(recipe):
    """thrasks.bench's server row runs a copy of the recipe's service: they must agree."""
    from thrasks.bench import server as bench

    requests = [
        {"id": 1, "op": "stats", "values": [5, 3, 9, 1], "rounds": 4},
        {"id": 2, "op": "stats", "values": [2.5, -1, 7], "rounds": 0},
        {"id": 3, "op": "echo", "data": {"a": [1, 2]}},
        {"id": 4, "op": "stats", "values": "nope"},
        {"op": "mystery"},
    ]
    for request in requests:
        line = (json.dumps(request) + "\n").encode()
        assert await bench.answer_line(line) == await recipe.answer_line(line, recipe.handle_request)
