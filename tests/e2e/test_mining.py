"""The pool mines real blocks on a real regtest node with the built-in miner over TCP."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest

from hashquarry.chain.address import address_to_script, network
from hashquarry.chain.encoding import read_bip34_height
from hashquarry.chain.hashing import sha256d
from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool

from .helpers import parse_block_coinbase, wait_for

pytestmark = pytest.mark.e2e


async def _mine_until(pool: Pool, opts: MinerOptions, blocks: int, timeout: float) -> dict:
    stop = asyncio.Event()
    task = asyncio.create_task(run_miner(opts, stop=stop))
    try:
        await wait_for(
            lambda: pool.stats.blocks_accepted >= blocks or task.done(),
            timeout,
            f"{blocks} accepted blocks",
        )
    finally:
        stop.set()
    return await asyncio.wait_for(task, 30)


async def test_pool_finds_blocks_the_node_accepts(regtest: RegtestNode, regtest_pool: Pool) -> None:
    pool = regtest_pool
    start_height = regtest.call("getblockcount")
    url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
    result = await _mine_until(
        pool, MinerOptions(url=url, users=["alice.rig1", "bob.rig1"]), blocks=3, timeout=120
    )
    await wait_for(
        lambda: all(b.result is not None for b in pool.stats.blocks),
        20,
        "block submissions to finish",
    )
    accepted = [b for b in pool.stats.blocks if b.accepted]
    assert len(accepted) >= 3, pool.stats.blocks
    assert result["shares_accepted"] > 0
    assert regtest.call("getblockcount") >= start_height + 3

    payout = address_to_script(pool.settings.pool.address, network("regtest"))
    on_chain = 0
    for found in accepted:
        raw = bytes.fromhex(regtest.call("getblock", found.hash, 0))
        header, coinbase = parse_block_coinbase(raw)
        assert sha256d(header)[::-1].hex() == found.hash
        assert read_bip34_height(coinbase.script_sig) == found.height
        assert coinbase.outputs[0][1] == payout
        info = regtest.call("getblockheader", found.hash)
        assert info["height"] == found.height
        if info["confirmations"] >= 1:
            on_chain += 1
        # The whole reward goes to the pool address.
        assert coinbase.outputs[0][0] == sum(v for v, _ in coinbase.outputs)
    assert on_chain >= 3


async def test_version_rolling_blocks_are_valid(regtest: RegtestNode, regtest_pool: Pool) -> None:
    pool = regtest_pool
    url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
    already = pool.stats.blocks_accepted
    result = await _mine_until(
        pool,
        MinerOptions(url=url, users=["carol.roller"], version_rolling=True),
        blocks=already + 2,
        timeout=120,
    )
    assert result["shares_accepted"] > 0
    rolled = 0
    for found in pool.stats.blocks[-5:]:
        if not found.accepted:
            continue
        version = regtest.call("getblockheader", found.hash)["version"]
        if version & 0x1FFFE000 != 0x20000000 & 0x1FFFE000:
            rolled += 1
        assert version & ~0x1FFFE000 == 0x20000000 & ~0x1FFFE000
    assert rolled >= 1, "no accepted block carried rolled version bits"


def test_miner_cli_prints_json(regtest: RegtestNode) -> None:
    """`hashquarry miner` against `hashquarry serve`, both as real processes."""
    import os

    from .conftest import pool_settings

    settings = pool_settings(regtest)
    env = dict(os.environ)
    port = _free_port()
    env.update(
        {
            "HASHQUARRY_NODE__URL": settings.node.url,
            "HASHQUARRY_NODE__USER": settings.node.user,
            "HASHQUARRY_NODE__PASSWORD": settings.node.password,
            "HASHQUARRY_NODE__ZMQ_HASHBLOCK": settings.node.zmq_hashblock or "",
            "HASHQUARRY_POOL__ADDRESS": settings.pool.address,
            "HASHQUARRY_POOL__NETWORK": "regtest",
            "HASHQUARRY_STRATUM__PORTS": json.dumps([{"port": port, "difficulty": 0.0002}]),
            "HASHQUARRY_DATA_DIR": str(settings.data_dir),
            "HASHQUARRY_API__ENABLED": "false",
        }
    )
    subprocess.run(
        [sys.executable, "-m", "hashquarry", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "hashquarry", "serve"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_port(port)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "hashquarry",
                "miner",
                "--url",
                f"stratum+tcp://127.0.0.1:{port}",
                "--user",
                "dave.cli",
                "--seconds",
                "6",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        report = json.loads(out.stdout.strip().splitlines()[-1])
        for key in ("shares_submitted", "shares_accepted", "shares_rejected", "hashrate"):
            assert key in report
        assert report["shares_accepted"] > 0
        assert report["hashrate"] > 0
    finally:
        server.terminate()
        server.wait(20)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"port {port} never opened")


def test_demo_command_runs_and_reports() -> None:
    """The README's first command, as a user runs it: the whole life of a coin (blocks
    mature, balances, a payout confirmed on the node) and the APIs it prints answering."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hashquarry", "demo", "--seconds", "75"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        api = None
        for line in proc.stderr:
            found = re.search(r"APIs at (http://[0-9.]+:[0-9]+)", line)
            if found:
                api = found.group(1)
                break
        assert api is not None, "the demo did not print its API address"
        # Drain stderr in the background so the demo never blocks on a full pipe.
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        deadline = time.monotonic() + 60
        stats: dict[str, object] = {}
        while time.monotonic() < deadline:
            try:
                stats = httpx.get(f"{api}/api/pool/stats", timeout=5).json()
            except httpx.TransportError:
                stats = {}  # the API may still be binding its port
            if stats.get("active_workers") == 4:  # 2 miner processes x 2 workers
                break
            time.sleep(1)
        assert stats.get("active_workers") == 4, stats
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    report = json.loads(out.strip().splitlines()[-1])
    for key in (
        "shares_accepted",
        "shares_rejected",
        "blocks_found",
        "blocks_accepted",
        "height",
        "blocks_confirmed",
        "payouts_sent",
        "payouts_confirmed",
        "api",
    ):
        assert key in report, report
    assert report["api"] == api
    assert report["shares_accepted"] > 0
    assert report["blocks_accepted"] > 0
    assert report["height"] >= report["blocks_accepted"] + 1
    assert report["blocks_confirmed"] >= 1, report
    assert report["payouts_confirmed"] >= 1, report
    assert report["balance_total"] >= 0 and report["immature_total"] > 0, report
