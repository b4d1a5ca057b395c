"""The load generator of `bench api`: open-loop HTTP/1.1 requests over plain asyncio
streams, in a process of its own.

Not httpx: a worker/list answer is ~300 KB, and a Python HTTP client parsing 500 of them
a second is slower than the server it measures. Here a response is a header block and
`readexactly(Content-Length)`, so reading costs next to nothing.

Open loop: request i is due at start + i / rate whatever happened before, and its
latency runs from that moment, so time spent waiting for a free connection counts (as a
real client sees it). At most MAX_CONNECTIONS requests are outstanding; one that cannot
get a connection within TIMEOUT of its due time is never sent and counts as an error
(with TIMEOUT as its latency), so an overloaded server gets a bounded backlog rather
than thousands of abandoned requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

MAX_CONNECTIONS = 256
TIMEOUT = 10.0


def request_bytes(
    host: str, port: int, method: str, path: str, body: Any, headers: dict[str, str]
) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """One request on a kept-alive connection; the response's status."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    length = 0
    for field in fields:
        name, _, value = field.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def open_loop(
    host: str, port: int, raw: bytes, rate: float, seconds: float
) -> tuple[list[float], int, float]:
    """(latencies in s, errors, elapsed s) of rate x seconds requests."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(MAX_CONNECTIONS)
    lat: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        try:
            await asyncio.wait_for(slots.acquire(), max(due + TIMEOUT - time.perf_counter(), 0))
        except TimeoutError:
            errors += 1
            lat.append(TIMEOUT)
            return
        try:
            status = 0
            # A kept-alive connection the server has since closed (uvicorn drops idle
            # ones after 5 s) fails at once: one retry on a new connection, as HTTP
            # clients do. A new connection that fails is an error.
            for reused in (bool(idle), False):
                conn = idle.pop() if reused else await asyncio.open_connection(host, port)
                try:
                    status = await exchange(*conn, raw)
                    idle.append(conn)
                    break
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    conn[1].close()
                    if not reused:
                        break
        except OSError:
            status = 0
        finally:
            slots.release()
        took = time.perf_counter() - due
        lat.append(took)
        if status != 200 or took > TIMEOUT:
            errors += 1

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    return lat, errors, elapsed


async def closed_loop(host: str, port: int, raw: bytes, seconds: float) -> list[float]:
    """One request at a time on one connection: latencies in s (the service time)."""
    reader, writer = await asyncio.open_connection(host, port)
    lat: list[float] = []
    end = time.perf_counter() + seconds
    try:
        while time.perf_counter() < end or len(lat) < 5:
            t0 = time.perf_counter()
            await exchange(reader, writer, raw)
            lat.append(time.perf_counter() - t0)
    finally:
        writer.close()
    return lat


WARMUP = 2.0  # seconds of load first, not measured


def load_process(host: str, port: int, raw: bytes, rate: float, seconds: float, out: Any) -> None:
    """Entry point of the load process: puts (latencies, errors, elapsed) on `out`.

    The first WARMUP seconds at the same rate are not measured: starting this process
    takes longer than the cache keeps an answer, so the run would otherwise open with
    one cold computation that every request of its first ~150 ms waits for, a start-up
    artefact rather than the steady state (it recurs only for an endpoint nobody asked
    for in two seconds)."""

    async def both() -> tuple[list[float], int, float]:
        await open_loop(host, port, raw, rate, WARMUP)
        return await open_loop(host, port, raw, rate, seconds)

    out.put(asyncio.run(both()))
