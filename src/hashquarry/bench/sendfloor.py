"""The kernel's floor under figure 3: one send() per miner on loopback.

A broadcast is one write per connection. On loopback the sending CPU also runs the
receiving side of TCP for each segment, so a send costs several microseconds of kernel
time whatever the sender is written in. This measures that floor on the same machine
and the same count: plain `socket.send` of a notify-sized message to N connected
loopback sockets from one thread, the receiver draining in another process.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import socket
import statistics
import time
from typing import Any

from hashquarry.bench.control import SOURCE_ADDRESSES
from hashquarry.bench.measure import raise_nofile_limit

# A clean notify for a regtest template without transactions is about this long.
NOTIFY_BYTES = 400


def _drain(port: int, count: int, messages: int, reading: bool) -> None:
    raise_nofile_limit()
    conns = []
    for i in range(count):
        c = socket.socket()
        c.bind((SOURCE_ADDRESSES[i % len(SOURCE_ADDRESSES)], 0))
        c.connect(("127.0.0.1", port))
        conns.append(c)
    if not reading:
        # As figure 3's parked miners: the rounds fit the receive buffers unread.
        time.sleep(120)
        return
    ep = select.epoll()
    for c in conns:
        ep.register(c.fileno(), select.EPOLLIN)
    seen = 0
    deadline = time.monotonic() + 120
    while seen < messages and time.monotonic() < deadline:
        for fd, _ in ep.poll(1.0):
            seen += os.read(fd, 1 << 16).count(b"\n")


def loopback_send_floor(
    count: int, size: int = NOTIFY_BYTES, rounds: int = 5, *, reading: bool = True
) -> dict[str, Any]:
    """Wall and kernel milliseconds to send `size` bytes once to each of `count` sockets
    (the receiver reads as data arrives, or, not `reading`, only holds the sockets)."""
    raise_nofile_limit()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4096)
    port = srv.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    receiver = ctx.Process(target=_drain, args=(port, count, count * rounds, reading), daemon=True)
    receiver.start()
    conns: list[socket.socket] = []
    try:
        srv.settimeout(60)
        for _ in range(count):
            c, _ = srv.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns.append(c)
        time.sleep(0.5)
        msg = b"x" * (size - 1) + b"\n"
        wall, kernel = [], []
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), os.times()
            for c in conns:
                c.send(msg)
            t1, c1 = time.perf_counter(), os.times()
            wall.append((t1 - t0) * 1e3)
            kernel.append((c1.system - c0.system) * 1e3)
            time.sleep(0.2)
        if reading:
            receiver.join(30)
        return {
            "count": count,
            "bytes": size,
            "wall_ms_p50": statistics.median(wall),
            "kernel_ms_p50": statistics.median(kernel),
            "rounds": wall,
            "reading": reading,
        }
    finally:
        for c in conns:
            c.close()
        srv.close()
        if receiver.is_alive():
            receiver.kill()
