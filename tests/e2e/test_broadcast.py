"""A new block's clean notify through the fan-out (sender threads), on the real pool.

Real regtest node, real TCP miners, both event loops the pool runs on (asyncio and
uvloop: their transports queue writes differently, and the fan-out may only write to
a socket whose transport holds nothing). Each loop is run by the test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest
import uvloop

from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.work import prevhash_to_notify
from hashquarry.stratum import fanout
from hashquarry.stratum.fanout import Fanout
from hashquarry.stratum.server import MinerConnection

from .conftest import pool_settings, start_pool, stop_pool

MINERS = 120


class RawMiner:
    """Subscribes and authorizes, then keeps every line it reads, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int, name: str, *, rcvbuf: int | None = None) -> RawMiner:
        sock = socket.socket()
        if rcvbuf is not None:
            # Before connect, so the advertised window is small from the start.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        miner = cls(reader, writer)
        for i, (method, params) in enumerate(
            [("mining.subscribe", ["fanout-test"]), ("mining.authorize", [name, "x"])]
        ):
            writer.write(orjson.dumps({"id": i + 1, "method": method, "params": params}) + b"\n")
        await writer.drain()
        return miner

    @property
    def local_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def read_until(self, done: Any, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                line = await self.reader.readline()
                assert line, "the pool closed the connection"
                if line.strip():  # blank lines are skipped, as miners do
                    self.lines.append(orjson.loads(line))

    def clean_notifies(self, prevhash: str) -> list[int]:
        return [
            i
            for i, m in enumerate(self.lines)
            if m.get("method") == "mining.notify"
            and m["params"][1] == prevhash
            and m["params"][8] is True
        ]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _server_side(pool: Any, miner: RawMiner) -> MinerConnection:
    for conn in pool.server.connections:
        peer = conn.transport.get_extra_info("peername") if conn.transport else None
        if peer and peer[1] == miner.local_port:
            return conn  # type: ignore[no-any-return]
    raise AssertionError("no server connection for the miner")


@pytest.mark.skipif(not fanout.NATIVE, reason="hashquarry.stratum._fanout not built")
@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_new_block_reaches_every_miner_whole_and_in_order(
    regtest: RegtestNode, run: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    run(_new_block_to_every_miner(regtest))


async def _new_block_to_every_miner(regtest: RegtestNode) -> None:
    settings = pool_settings(regtest, defences={"max_buffer_bytes": 8 << 20}, send_threads=2)
    pool = await start_pool(settings)
    # Small chunks so 120 miners spread over both sender threads and the loop thread.
    pool.server.fanout.close()
    pool.server.fanout = Fanout(2, chunk=7)
    miners: list[RawMiner] = []
    everyone: list[RawMiner] = []
    try:
        port = pool.ports[0]
        miners = [await RawMiner.connect(port, f"alice.m{i}") for i in range(MINERS)]
        stuck = await RawMiner.connect(port, "bob.stuck", rcvbuf=4096)
        full = await RawMiner.connect(port, "carol.full", rcvbuf=4096)
        everyone = [*miners, stuck, full]
        for m in everyone:
            await m.read_until(lambda m: any(x.get("method") == "mining.notify" for x in m.lines))

        # One miner's transport holds data its socket would not take: the broadcast must
        # queue behind it, not jump ahead of it through the fan-out.
        conn = _server_side(pool, stuck)
        stuck.writer.transport.pause_reading()
        assert conn.transport is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 8192
        )
        filler = [
            orjson.dumps({"id": None, "method": "client.show_message", "params": [f"{i:07d}" * 50]})
            + b"\n"
            for i in range(4000)
        ]
        conn.send(b"".join(filler))
        await asyncio.sleep(0.2)
        assert conn.transport.get_write_buffer_size() > 0, "the filler must back up"

        # Another's socket is full but its transport holds nothing: the fan-out tries,
        # the socket takes nothing, and the transport must get the whole notify.
        # Blank lines fill it, so a write cut short never cuts a message.
        other = _server_side(pool, full)
        full.writer.transport.pause_reading()
        sock = other.transport.get_extra_info("socket")  # type: ignore[union-attr]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        await asyncio.sleep(0.1)
        blank = b"\n" * 4096
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(other.fd, blank)
        assert other.transport.get_write_buffer_size() == 0  # type: ignore[union-attr]

        tip = await asyncio.to_thread(regtest.mine, 1)
        prevhash = prevhash_to_notify(bytes.fromhex(tip[0])[::-1])
        for m in miners:
            await m.read_until(lambda m: bool(m.clean_notifies(prevhash)))
        stuck.writer.transport.resume_reading()
        await stuck.read_until(lambda m: bool(m.clean_notifies(prevhash)), timeout=60)
        full.writer.transport.resume_reading()
        await full.read_until(lambda m: bool(m.clean_notifies(prevhash)), timeout=60)
        assert len(full.clean_notifies(prevhash)) == 1

        for m in miners:
            # Exactly one clean notify, and nothing cut or doubled around it.
            assert len(m.clean_notifies(prevhash)) == 1
        first = stuck.clean_notifies(prevhash)[0]
        before = [
            m["params"][0][:7]
            for m in stuck.lines[:first]
            if m.get("method") == "client.show_message"
        ]
        # Every line parsed as JSON (read_until), so nothing was cut into the filler.
        assert before == [f"{i:07d}" for i in range(4000)], "filler lost or reordered"
    finally:
        for m in everyone or miners:
            m.close()
        await stop_pool(pool)
