"""The node client and the template feed against the real regtest node: errors that say
what failed, new blocks by ZMQ alone and by polling alone, and a session that blows up
without taking the server down."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from hashquarry.chain.regtest import RegtestNode, reap_orphans
from hashquarry.chain.rpc import NodeAuthError, NodeRpc, NodeUnreachable, RpcError
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool
from hashquarry.stratum import session as session_mod

from .conftest import pool_settings
from .helpers import wait_for

pytestmark = pytest.mark.e2e


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_rpc_errors_name_what_failed(regtest: RegtestNode) -> None:
    async with NodeRpc(regtest.rpc_url, regtest.user, regtest.password) as rpc:
        assert await rpc.getblockcount() >= 1
        with pytest.raises(RpcError) as unknown:
            await rpc.call("nosuchmethod")
        assert unknown.value.code == -32601 and unknown.value.method == "nosuchmethod"
        assert "nosuchmethod" in str(unknown.value) and "-32601" in str(unknown.value)
        with pytest.raises(RpcError) as bad_param:
            await rpc.call("getblockhash", 10**9)
        assert bad_param.value.code != 0 and "out of range" in bad_param.value.message.lower()

    async with NodeRpc(regtest.rpc_url, regtest.user, "wrong-password", retries=0) as rpc:
        with pytest.raises(NodeAuthError, match="401"):
            await rpc.getblockcount()

    url = f"http://127.0.0.1:{_closed_port()}"
    async with NodeRpc(url, "u", "p", retries=2, backoff=0.01) as rpc:
        with pytest.raises(NodeUnreachable) as down:
            await rpc.getblockcount()
    assert url in str(down.value) and "3 attempts" in str(down.value)


async def _new_block_reaches_pool(regtest: RegtestNode, pool: Pool) -> float:
    await pool.start()
    try:
        job = pool.jobs.current
        assert job is not None
        height = job.height
        started = time.monotonic()
        await asyncio.to_thread(regtest.mine, 1)
        await wait_for(
            lambda: pool.jobs.current is not None and pool.jobs.current.height == height + 1,
            20,
            "a job on the new block",
        )
        assert pool.jobs.current is not None and pool.jobs.current.clean
        return time.monotonic() - started
    finally:
        await pool.stop()


async def test_new_block_by_zmq_alone(regtest: RegtestNode) -> None:
    settings = pool_settings(regtest)
    # Polling once a minute and no refresh: only the ZMQ hashblock can be this fast.
    settings.node.poll_interval = 60.0
    settings.node.template_refresh = 3600.0
    took = await _new_block_reaches_pool(regtest, Pool(settings))
    assert took < 10, took


async def test_new_block_by_polling_alone(regtest: RegtestNode) -> None:
    settings = pool_settings(regtest)
    settings.node.zmq_hashblock = None
    settings.node.poll_interval = 0.5
    took = await _new_block_reaches_pool(regtest, Pool(settings))
    assert took < 10, took


async def test_a_failing_session_does_not_take_the_server_down(
    regtest: RegtestNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one mock here: no well-formed input makes a session raise, so a handler is
    replaced to cause the fault; everything else is the real server and a real miner."""

    def explode(self: object, msg_id: object, params: object, now: float) -> object:
        raise RuntimeError("injected fault")

    monkeypatch.setitem(session_mod._HANDLERS, "mining.suggest_difficulty", explode)
    pool = Pool(pool_settings(regtest))
    await pool.start()
    stop = asyncio.Event()
    url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
    miner = asyncio.create_task(run_miner(MinerOptions(url=url, users=["alice.rig"]), stop=stop))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", pool.ports[0])
        for i, (method, params) in enumerate(
            [
                ("mining.subscribe", ["probe"]),
                ("mining.suggest_difficulty", [1.0]),
                ("mining.authorize", ["bob.probe", "x"]),
            ]
        ):
            writer.write(orjson.dumps({"id": i + 1, "method": method, "params": params}) + b"\n")
        await writer.drain()
        replies: dict[int, dict[str, object]] = {}
        deadline = time.monotonic() + 20
        while len(replies) < 3:
            assert time.monotonic() < deadline, replies
            msg = orjson.loads(await asyncio.wait_for(reader.readline(), 10))
            if msg.get("id") is not None:
                replies[int(msg["id"])] = msg
        assert replies[2]["error"] == [20, "internal error", None]
        # The same connection still answers, and the other miner keeps mining.
        assert replies[3]["result"] is True
        before = pool.stats.accepted
        await wait_for(lambda: pool.stats.accepted > before, 60, "shares after the fault")
        writer.close()
    finally:
        stop.set()
        await asyncio.wait_for(miner, 30)
        await pool.stop()


def test_a_node_left_by_a_killed_owner_is_reaped(tmp_path: Path) -> None:
    """kill -9 of the process that started a temporary node leaves the node running;
    the next node start (here: reap_orphans itself) stops it and removes its datadir."""
    script = (
        "import sys, time\n"
        "from hashquarry.chain.regtest import RegtestNode\n"
        "node = RegtestNode().start()\n"
        "print(node.datadir, node.proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    datadir, pid = owner.stdout.readline().split()
    node_pid = int(pid)
    owner.kill()
    owner.wait(10)
    assert Path(f"/proc/{node_pid}").exists(), "the node outlives its killed owner"
    assert reap_orphans() >= 1
    assert (
        not Path(f"/proc/{node_pid}").exists()
        or "zombie" in Path(f"/proc/{node_pid}/status").read_text().lower()
    )
    assert not Path(datadir).exists()
