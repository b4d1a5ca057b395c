"""`hashquarry bench api`: requests/s and p50/p99 latency of three API endpoints.

The API runs in its own process (uvicorn) on a migrated SQLite store holding a
mining user with 1,000 workers and a day of share minutes; the load comes from
another process at a fixed request rate (open loop: a slow answer does not slow
the offered load), so latency includes queueing, as a real client sees it.

Two servers are measured in turn. `cached`: as `serve` runs it, with the 1-second
response cache, where identical requests are almost all answered from the cache.
`uncached`: the cache off (cache_ttl=0), so every request computes its answer (for
worker/list: the 24-hour figures of 1,000 workers); its service time is also measured
closed loop (one request at a time), which is the floor any rate has to live with.
Each open-loop run is judged against the target: p99 <= 25 ms at the offered rate
(500 requests/s by default), MET or MISS.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from hashquarry.bench.api_load import closed_loop, load_process, request_bytes
from hashquarry.bench.measure import percentile

ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # a regtest address: the pool's payout
OWNER, USER = "bench", "benchuser"
WORKERS = 1_000
TARGET_P99_MS = 25.0


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


def serve(workdir: Path, port: int, cache_ttl: float = 1.0) -> None:
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
    app = create_app(ctx, rate=1e6, burst=1e6, cache_ttl=cache_ttl)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Case = tuple[str, str, str, dict[str, Any] | None, dict[str, str]]


def _cases(secret: str) -> list[Case]:
    f2p = {"F2P-API-SECRET": secret}
    body = {"currency": "bitcoin", "mining_user_name": USER}
    return [
        ("f2pool hash_rate/info", "POST", "/v2/hash_rate/info", body, f2p),
        ("f2pool hash_rate/worker/list (1,000 workers)", "POST", "/v2/hash_rate/worker/list",
         body, f2p),
        ("bitminter /api/pool/stats", "GET", "/api/pool/stats", None, {}),
    ]  # fmt: skip


class _Server:
    """The API in its own process on the bench store, until stopped."""

    def __init__(self, work: Path, cache_ttl: float) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c",
             f"from hashquarry.bench.api import serve; from pathlib import Path; "
             f"serve(Path({str(work)!r}), {self.port}, {cache_ttl!r})"],
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.base}/api/pool/stats", timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the API server did not start") from None
                time.sleep(0.2)

    def drain(self, limit: float = 180.0) -> None:
        """Wait until requests left over from a load run are answered: a cheap request
        is quick again (the next run must not start behind someone else's queue)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{self.base}/api/pool/workers", timeout=limit)
            if time.monotonic() - t0 < 0.05:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


def _open_loop(server: _Server, case: Case, rate: float, seconds: float) -> dict[str, Any]:
    name, method, path, body, headers = case
    check = httpx.request(method, server.base + path, json=body, headers=headers, timeout=30)
    if check.status_code != 200:
        raise RuntimeError(f"{name}: {check.status_code} {check.text[:300]}")
    raw = request_bytes("127.0.0.1", server.port, method, path, body, headers)
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=load_process, args=("127.0.0.1", server.port, raw, rate, seconds, q))
    p.start()
    lat, errors, elapsed = q.get()
    p.join()
    server.drain()
    lat_ms = sorted(x * 1000 for x in lat)
    p99 = percentile(lat_ms, 99)
    result = {
        "offered_per_s": rate,
        "requests_per_s": (len(lat) - errors) / elapsed,
        "p50_ms": percentile(lat_ms, 50),
        "p99_ms": p99,
        "errors": errors,
        # Met only if the offered rate was served (no errors) within the p99 target.
        "verdict": "MET" if p99 <= TARGET_P99_MS and errors == 0 else "MISS",
    }
    print(f"  {name}: {result}", file=sys.stderr)
    return result


def _closed_loop(server: _Server, case: Case, seconds: float) -> dict[str, Any]:
    """One request at a time: the service time with no queue, and the rate it allows."""
    _, method, path, body, headers = case
    raw = request_bytes("127.0.0.1", server.port, method, path, body, headers)
    lat = sorted(x * 1000 for x in asyncio.run(closed_loop("127.0.0.1", server.port, raw, seconds)))
    return {
        "requests": len(lat),
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_per_s": 1000 * len(lat) / sum(lat),
    }


def report(results: dict[str, Any]) -> str:
    """A table of both runs with the target, for people (the JSON is for machines)."""
    rate = results["target"]["rate_per_s"]
    lines = [f"target: p99 <= {TARGET_P99_MS:g} ms at {rate:g} requests/s offered"]
    for mode in ("cached", "uncached"):
        for name, r in results[mode].items():
            lines.append(
                f"{mode:8} {name:46} {r['requests_per_s']:7.0f}/s  p50 {r['p50_ms']:8.2f} ms  "
                f"p99 {r['p99_ms']:8.2f} ms  errors {r['errors']:5}  {r['verdict']}"
            )
    s = results["uncached_service_time"]
    lines.append(
        f"uncached worker/list one at a time: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} "
        f"ms, at most {s['max_per_s']:.0f} requests/s on one core"
    )
    return "\n".join(lines)


def run(rate: float = 500.0, seconds: float = 10.0, workdir: Path | None = None) -> dict[str, Any]:
    """Both runs; the table goes to stderr, the figures are returned (the CLI prints them
    as JSON)."""
    work = workdir or Path(tempfile.mkdtemp(prefix="hashquarry-bench-api-"))
    secret = asyncio.run(prepare(work))
    cases = _cases(secret)
    results: dict[str, Any] = {"target": {"p99_ms": TARGET_P99_MS, "rate_per_s": rate}}
    for mode, ttl in (("cached", 1.0), ("uncached", 0.0)):
        server = _Server(work, ttl)
        try:
            print(f"{mode}:", file=sys.stderr)
            results[mode] = {c[0]: _open_loop(server, c, rate, seconds) for c in cases}
            if mode == "uncached":
                probe = _closed_loop(server, cases[1], min(seconds, 5.0))
                results["uncached_service_time"] = probe
        finally:
            server.stop()
    print(report(results), file=sys.stderr)
    return results
