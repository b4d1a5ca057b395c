"""`hashquarry bench api`: requests/s and p50/p99 latency of three API endpoints.

The API runs in its own process (uvicorn) on a migrated SQLite store holding a
mining user with 1,000 workers and a day of share minutes; the load comes from
another process at a fixed request rate (open loop: a slow answer does not slow
the offered load), so latency includes queueing, as a real client sees it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hashquarry.bench.measure import percentile

ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # a regtest address: the pool's payout
OWNER, USER = "bench", "benchuser"
WORKERS = 1_000


def _settings(workdir: Path) -> Any:
    from hashquarry.config import load_settings

    return load_settings(
        None, pool={"address": ADDRESS, "network": "regtest"}, data_dir=workdir,
        api={"rate": 1e6, "burst": 1e6},
    )  # fmt: skip


async def prepare(workdir: Path) -> str:
    """Store with one user of 1,000 workers and 24 h of minutes; returns an API secret."""
    from hashquarry.accounting.aggregate import Aggregator, RoundState, ShiftState
    from hashquarry.accounting.writer import write_batch
    from hashquarry.accounts.service import AccountsService
    from hashquarry.shares.events import ShareEvent, ShareResult
    from hashquarry.store.engine import default_url, make_engine
    from hashquarry.store.migrate import upgrade_async

    url = default_url(workdir)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        settings = _settings(workdir)
        accounts = AccountsService.from_settings(engine, settings)
        await accounts.create_owner(OWNER)
        _, secret = await accounts.create_api_key(OWNER, "read_hashrate,read_revenue")
        await accounts.add_mining_user(OWNER, USER)
        now = time.time()
        agg = Aggregator(
            "bitcoin", round_=RoundState(1, "bitcoin", now - 86400, 1),
            shift=ShiftState(1, "bitcoin", now - 86400, 1e12), next_block_id=1,
            mode_of=lambda _c, _a, _t: "pplns", fee_bps=100,
        )  # fmt: skip
        seq = 0
        # One share per worker every 10 minutes over the last day: 144,000 shares.
        for step in range(144):
            t = now - 86400 + step * 600
            for w in range(WORKERS):
                seq += 1
                agg.apply(seq, ShareEvent(
                    time=t + w * 0.5, account=USER, worker=f"rig{w:04d}", job_id="1",
                    height=1, difficulty=65536.0, network_difficulty=1e14,
                    result=ShareResult.ACCEPTED, reason="", hash_hex=None, is_block=False,
                    delayed=False, remote="10.0.0.1", session_id="00000001",
                ))  # fmt: skip
            if step % 24 == 23:
                async with engine.begin() as conn:
                    await write_batch(
                        conn,
                        agg.take(),
                        scheme_for_block=lambda b: "pplns",
                        fee_bps=100,
                        pplns_n=2.0,
                        maturity=100,
                    )
        return secret
    finally:
        await engine.dispose()


def serve(workdir: Path, port: int) -> None:
    """The API server process (no pool: the store is what the API reads)."""
    import uvicorn

    from hashquarry.accounts.service import AccountsService
    from hashquarry.api.app import create_app
    from hashquarry.api.context import ApiContext
    from hashquarry.distribution.service import DistributionService
    from hashquarry.store.engine import default_url, make_engine

    settings = _settings(workdir)
    engine = make_engine(default_url(workdir))
    accounts = AccountsService.from_settings(engine, settings)
    ctx = ApiContext(
        settings=settings,
        engine=engine,
        accounts=accounts,
        distribution=DistributionService(engine, accounts),
    )
    app = create_app(ctx, rate=1e6, burst=1e6)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop"
    )


def _load(
    url: str,
    method: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    out: Any,
) -> None:
    """Open-loop load in this (separate) process; puts (latencies, errors, elapsed)."""

    async def main() -> tuple[list[float], int, float]:
        lat: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def one() -> None:
                nonlocal errors
                t0 = time.perf_counter()
                try:
                    r = await client.request(method, url, json=body, headers=headers)
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                lat.append(time.perf_counter() - t0)

            tasks = []
            start = time.perf_counter()
            n = int(rate * seconds)
            for i in range(n):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
            return lat, errors, time.perf_counter() - start

    out.put(asyncio.run(main()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(rate: float = 500.0, seconds: float = 10.0, workdir: Path | None = None) -> dict[str, Any]:
    work = workdir or Path(tempfile.mkdtemp(prefix="hashquarry-bench-api-"))
    secret = asyncio.run(prepare(work))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c",
         f"from hashquarry.bench.api import serve; from pathlib import Path; "
         f"serve(Path({str(work)!r}), {port})"],
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/api/pool/stats", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the API server did not start") from None
                time.sleep(0.2)
        f2p = {"F2P-API-SECRET": secret}
        cases = [
            ("f2pool hash_rate/info", "POST", "/v2/hash_rate/info",
             {"currency": "bitcoin", "mining_user_name": USER}, f2p),
            ("f2pool hash_rate/worker/list (1,000 workers)", "POST",
             "/v2/hash_rate/worker/list", {"currency": "bitcoin", "mining_user_name": USER},
             f2p),
            ("bitminter /api/pool/stats", "GET", "/api/pool/stats", None, {}),
        ]  # fmt: skip
        results: dict[str, Any] = {}
        ctx = multiprocessing.get_context("spawn")
        for name, method, path, body, headers in cases:
            check = httpx.request(method, base + path, json=body, headers=headers, timeout=10)
            if check.status_code != 200:
                raise RuntimeError(f"{name}: {check.status_code} {check.text[:300]}")
            q = ctx.Queue()
            p = ctx.Process(
                target=_load, args=(base + path, method, body, headers, rate, seconds, q)
            )
            p.start()
            lat, errors, elapsed = q.get()
            p.join()
            lat_ms = sorted(x * 1000 for x in lat)
            results[name] = {
                "requests_per_s": len(lat) / elapsed,
                "p50_ms": percentile(lat_ms, 50),
                "p99_ms": percentile(lat_ms, 99),
                "errors": errors,
                "offered_per_s": rate,
            }
        return results
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
