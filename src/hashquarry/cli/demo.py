"""`hashquarry demo`: a real regtest node, the pool and built-in miners, with live progress."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from sqlalchemy import func, select

from hashquarry.accounting import stats as read_models
from hashquarry.accounting.ledger import Balance, balances
from hashquarry.api.app import create_app, serve_api
from hashquarry.api.context import ApiContext
from hashquarry.chain.regtest import RegtestNode
from hashquarry.config import load_settings
from hashquarry.payouts.tables import payouts
from hashquarry.pool import Pool
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

ACCOUNTS = ("alice", "bob")
MATURITY = 10
PAYOUT_INTERVAL = 15.0
THRESHOLD = 50 * 100_000_000  # base units


async def _register(pool: Pool, node: RegtestNode) -> str:
    """An owner with the demo's mining users, each with a wallet on the node; returns a
    read-only API key of the owner, so the user can try the APIs while the demo runs."""
    assert pool.accounts is not None
    await pool.accounts.create_owner("demo")
    for name in ACCOUNTS:
        await pool.accounts.add_mining_user("demo", name, f"demo user {name}")
        address = node.call("getnewaddress")
        await pool.accounts.update_wallet("demo", name, "bitcoin", address, THRESHOLD)
    _, key = await pool.accounts.create_api_key(
        "demo", ["read_hashrate", "read_revenue", "read_payments"]
    )
    return key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _payout_counts(pool: Pool) -> Counter[str]:
    if pool.accounting is None:
        return Counter()
    async with pool.accounting.engine.connect() as conn:
        rows = (
            await conn.execute(select(payouts.c.status, func.count()).group_by(payouts.c.status))
        ).all()
    return Counter({status: int(n) for status, n in rows})


def _miner_cmd(url: str, users: list[str], seconds: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "hashquarry", "miner", "--url", url]
    for u in users:
        cmd += ["--user", u]
    if seconds:
        cmd += ["--seconds", str(seconds)]
    return cmd


async def _ledger(pool: Pool) -> tuple[dict[str, Balance], Counter[str], Counter[str]]:
    if pool.accounting is None:
        return {}, Counter(), Counter()
    async with pool.accounting.engine.connect() as conn:
        bal = await balances(conn, pool.settings.pool.coin, time.time())
        rows = await read_models.blocks(conn, pool.settings.pool.coin, limit=10_000)
    return bal, Counter(r["status"] for r in rows), await _payout_counts(pool)


def _table(
    pool: Pool,
    height: int,
    started: float,
    node_ok: bool,
    stratum: str,
    api: str,
    ledger: tuple[dict[str, Balance], Counter[str], Counter[str]],
) -> Group:
    now = time.time()
    stats = pool.stats
    t = Table(title=f"hashquarry demo — regtest, {now - started:.0f} s", title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("stratum", stratum)
    t.add_row("APIs (Bitminter, SiaMining, f2pool)", api)
    t.add_row("node", "up" if node_ok else "[red]down[/red]")
    t.add_row("chain height", str(height))
    t.add_row("workers online", str(pool.server.worker_count()))
    t.add_row("shares accepted", f"[green]{stats.accepted}[/green]")
    t.add_row("shares rejected", f"{stats.rejected} {dict(stats.rejected_by) or ''}")
    t.add_row("pool hashrate (est.)", f"{stats.hashrate(now) / 1e3:,.1f} kH/s")
    t.add_row("blocks found", str(stats.blocks_found))
    t.add_row("blocks accepted by node", f"[green]{stats.blocks_accepted}[/green]")
    online = {
        f"{acct}.{wrk}"
        for conn in pool.server.connections
        if conn.session
        for acct, wrk in conn.session.workers.values()
    }
    w = Table(title="workers", title_justify="left")
    for col in ("worker", "online", "accepted", "rejected"):
        w.add_column(col, justify="left" if col == "worker" else "right")
    for name in sorted(online | set(stats.per_worker)):
        acc, rej = stats.per_worker.get(name, [0, 0])
        w.add_row(name, "yes" if name in online else "no", str(acc), str(rej))
    bal, statuses, paid = ledger
    t.add_row("payouts (sent / confirmed)", f"{paid.get('sent', 0)} / {paid.get('confirmed', 0)}")
    t.add_row(
        "blocks by status (store)", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    b = Table(title=f"balances (PPLNS, maturity {MATURITY} confirmations)", title_justify="left")
    for col in ("account", "immature", "balance", "paid"):
        b.add_column(col, justify="left" if col == "account" else "right")
    for account in sorted(bal):
        b.add_row(
            account,
            f"{bal[account].immature_balance / 1e8:.8f}",
            f"{bal[account].balance / 1e8:.8f}",
            f"{bal[account].paid / 1e8:.8f}",
        )
    return Group(t, w, b)


async def _demo(seconds: float | None, miner_processes: int, console: Console) -> dict[str, Any]:
    node = RegtestNode()
    data_dir = Path(tempfile.mkdtemp(prefix="hashquarry-demo-"))
    store = None
    console.print("[bold]starting a regtest node[/bold] (first run downloads it once)…")
    await asyncio.to_thread(node.start)
    procs: list[asyncio.subprocess.Process] = []
    pool: Pool | None = None
    api_task: asyncio.Task[None] | None = None
    try:
        address = node.call("getnewaddress")
        # Regtest coinbases need 100 confirmations before the wallet may spend them:
        # pre-mine so the wallet can pay the first payouts within the demo's minutes.
        await asyncio.to_thread(node.mine, 101, address)
        settings = load_settings(
            None,
            node={
                "url": node.rpc_url,
                "user": node.user,
                "password": node.password,
                "zmq_hashblock": node.zmq_url,
                "poll_interval": 1.0,
            },
            pool={"address": address, "network": "regtest"},
            stratum={
                "ports": [{"port": 0, "difficulty": 0.0002, "host": "127.0.0.1"}],
                "vardiff": {"target_interval": 3.0, "retarget_window": 15.0},
            },
            data_dir=data_dir,
            # Regtest's network difficulty is below one share: a huge N makes the
            # PPLNS window span the last few dozen shares, as N=2 does on mainnet.
            accounting={
                "scheme": "pplns",
                "pplns_n": 1e8,
                "maturity": MATURITY,
                "tracker_interval": 2.0,
                "shift_span": 0.01,
            },
            payouts={"interval": PAYOUT_INTERVAL, "confirmations": 1},
        )
        url_db = default_url(data_dir)
        await upgrade_async(url_db)
        store = make_engine(url_db)
        pool = Pool(settings, store=store)
        api_key = await _register(pool, node)
        await pool.start()
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        api_port = _free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        api_task = asyncio.create_task(
            serve_api(create_app(ApiContext.for_pool(pool)), "127.0.0.1", api_port)
        )
        console.print(f"pool paying {address}, stratum at {url}")
        console.print(
            f"APIs at {api_url} (OpenAPI at {api_url}/openapi.json), e.g.\n"
            f"  curl {api_url}/api/pool/stats\n"
            f"  curl -H 'Authorization: key={api_key}' {api_url}/api/users\n"
            f"  curl -X POST -H 'F2P-API-SECRET: {api_key}' -H 'Content-Type: application/json' "
            f'-d \'{{"currency": "bitcoin", "mining_user_name": "alice"}}\' '
            f"{api_url}/v2/hash_rate/info"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        for i in range(miner_processes):
            acct = ACCOUNTS[i % len(ACCOUNTS)]
            users = [f"{acct}.rig{i + 1}a", f"{acct}.rig{i + 1}b"]
            procs.append(
                await asyncio.create_subprocess_exec(
                    *_miner_cmd(url, users, None),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                    # The pool must stay responsive while the miners burn the CPU.
                    preexec_fn=lambda: os.nice(10),
                )
            )
        started = time.time()
        height = await pool.rpc.getblockcount()
        interactive = console.is_terminal
        last_print = 0.0
        with (
            Live(console=console, refresh_per_second=2, auto_refresh=False, transient=False)
            if interactive
            else contextlib.nullcontext() as live
        ):
            while not stop.is_set():
                if seconds is not None and time.time() - started >= seconds:
                    break
                with contextlib.suppress(Exception):
                    height = await pool.rpc.call("getblockcount", retries=0)
                if live is not None:
                    ledger = await _ledger(pool)
                    live.update(
                        _table(pool, height, started, pool.feed.node_ok, url, api_url, ledger),
                        refresh=True,
                    )
                elif time.time() - last_print >= 5:
                    last_print = time.time()
                    s = pool.stats
                    console.print(
                        f"[{time.time() - started:5.0f}s] height {height} workers "
                        f"{pool.server.worker_count()} accepted {s.accepted} rejected "
                        f"{s.rejected} hashrate {s.hashrate(time.time()) / 1e3:.1f} kH/s "
                        f"blocks {s.blocks_found} found / {s.blocks_accepted} accepted"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        miner_reports = []
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                out, _ = await asyncio.wait_for(p.communicate(), 15)
                line = out.decode().strip().splitlines()[-1] if out.strip() else ""
                miner_reports.append(orjson.loads(line) if line else {})
            except (TimeoutError, ValueError):
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                miner_reports.append({})
        # Let in-flight block submissions finish before counting.
        await asyncio.sleep(0.5)
        height = await pool.rpc.getblockcount()
        bal, statuses, paid = await _ledger(pool)
        stats = pool.stats
        return {
            "blocks_confirmed": statuses.get("confirmed", 0),
            "payouts_sent": paid.get("sent", 0) + paid.get("confirmed", 0),
            "payouts_confirmed": paid.get("confirmed", 0),
            "immature_total": sum(b.immature_balance for b in bal.values()),
            "balance_total": sum(b.balance for b in bal.values()),
            "shares_accepted": stats.accepted,
            "shares_rejected": stats.rejected,
            "rejected_by": dict(stats.rejected_by),
            "blocks_found": stats.blocks_found,
            "blocks_accepted": stats.blocks_accepted,
            "height": height,
            "hashrate": stats.hashrate(time.time()),
            "miners_hashrate": sum(r.get("hashrate", 0.0) for r in miner_reports),
            "miners_shares_accepted": sum(r.get("shares_accepted", 0) for r in miner_reports),
            "workers": sum(len(r.get("workers", {})) for r in miner_reports),
            "seconds": round(time.time() - started, 1),
            "api": api_url,
        }
    finally:
        if api_task is not None:
            api_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await api_task
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        if pool is not None:
            await pool.stop()
        if store is not None:
            await store.dispose()
        await asyncio.to_thread(node.close)
        shutil.rmtree(data_dir, ignore_errors=True)


def run_demo(seconds: float | None, miner_processes: int = 2) -> dict[str, Any]:
    console = Console(stderr=True)
    # Log through the live display's console so warnings do not tear the table.
    import logging

    root = logging.getLogger()
    root.handlers[:] = [RichHandler(console=console, show_path=False)]
    root.setLevel(logging.WARNING)
    return asyncio.run(_demo(seconds, miner_processes, console))
