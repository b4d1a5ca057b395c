"""Garbage, oversize lines and floods get errors and a ban while honest miners keep mining;
the node going away does not take the pool down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool

from .conftest import pool_settings, start_pool, stop_pool
from .helpers import connect, wait_for

pytestmark = pytest.mark.e2e


async def _open(port: int, source_ip: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # Each attacker gets its own loopback address, so a ban does not hit the honest miner.
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source_ip, 0))


async def _read_json(reader: asyncio.StreamReader) -> dict | None:
    line = await asyncio.wait_for(reader.readline(), 10)
    return json.loads(line) if line else None


async def _closed(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    with contextlib.suppress(ConnectionError):
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line:
                return True
    return True


async def test_garbage_oversize_and_flood_are_banned_while_others_mine(
    difficulty1: RegtestNode, d1_pool: Pool
) -> None:
    pool = d1_pool
    port = pool.ports[0]
    stop = asyncio.Event()
    honest = asyncio.create_task(
        run_miner(
            MinerOptions(url=f"stratum+tcp://127.0.0.1:{port}", users=["grace.honest"]), stop=stop
        )
    )
    try:
        await wait_for(lambda: pool.stats.accepted >= 2, 60, "the honest miner's first shares")

        # 1. Malformed lines: each gets error 20, then the IP is banned.
        reader, writer = await _open(port, "127.0.0.2")
        writer.write(b"this is not json\n")
        await writer.drain()
        reply = await _read_json(reader)
        assert reply is not None and reply["error"][0] == 20
        assert "malformed" in reply["error"][1]
        for i in range(40):
            writer.write(b'{"id": %d, "method": 5}\n' % i)
        await writer.drain()
        assert await _closed(reader)
        writer.close()
        assert pool.server.defences.is_banned("127.0.0.2", time.time())
        r2, w2 = await _open(port, "127.0.0.2")
        refused = await _read_json(r2)
        assert refused is not None and "banned" in refused["error"][1]
        assert await _closed(r2)
        w2.close()

        # 2. An oversize line: an error naming the limit, then the connection is closed.
        reader, writer = await _open(port, "127.0.0.3")
        writer.write(b'{"id":1,"method":"mining.subscribe","params":["' + b"x" * 20000)
        await writer.drain()
        reply = await _read_json(reader)
        assert reply is not None and "longer than" in reply["error"][1]
        assert await _closed(reader)
        writer.close()

        # 3. A flood of otherwise valid messages: error, ban, disconnect.
        reader, writer = await _open(port, "127.0.0.4")
        writer.write(b'{"id":1,"method":"mining.extranonce.subscribe","params":[]}\n' * 2000)
        await writer.drain()
        assert await _closed(reader)
        writer.close()
        assert pool.server.defences.is_banned("127.0.0.4", time.time())

        # The honest miner never noticed.
        before = pool.stats.accepted
        await wait_for(lambda: pool.stats.accepted >= before + 2, 60, "honest shares after")
    finally:
        stop.set()
    result = await asyncio.wait_for(honest, 30)
    assert result["shares_rejected"] == 0
    assert result["workers"]["grace.honest"]["connects"] == 1


async def test_unauthorized_connection_times_out(difficulty1: RegtestNode) -> None:
    settings = pool_settings(difficulty1, defences={"auth_timeout": 1.0})
    pool = await start_pool(settings)
    try:
        reader, writer = await _open(pool.ports[0], "127.0.0.5")
        writer.write(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
        await writer.drain()
        assert (await _read_json(reader)) is not None
        assert await _closed(reader, timeout=10)
        writer.close()
    finally:
        await stop_pool(pool)


async def test_node_away_for_30s_then_back() -> None:
    node = RegtestNode().start()
    pool = None
    try:
        pool = await start_pool(pool_settings(node))
        client = await connect(pool.ports[0], "heidi.patient")
        before = client.job
        await asyncio.to_thread(node.stop)
        await asyncio.sleep(30)
        assert not pool.feed.node_ok
        assert client.connected and not client.closed.is_set()
        # Still serving: a new miner can connect and gets the last job.
        late = await connect(pool.ports[0], "heidi.late")
        assert late.job is not None
        await late.close()

        await asyncio.to_thread(node.start)
        await wait_for(lambda: pool.feed.node_ok, 30, "the pool to reconnect to the node")
        fresh = await asyncio.wait_for(client.wait_job(before), 30)
        assert fresh.job_id != before.job_id  # type: ignore[union-attr]
        assert client.connected
        await client.close()
    finally:
        if pool is not None:
            await stop_pool(pool)
        node.close()
