"""The `hashquarry` command line."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from hashquarry.config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="hashquarry: a mining pool on a real coin node.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
node_app = typer.Typer(help="Run a coin node for trying the pool.", no_args_is_help=True)
app.add_typer(node_app, name="node")
db_app = typer.Typer(help="The store: migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest(
    shares: Annotated[int, typer.Option(min=1000, help="shares to ingest")] = 200_000,
    window: Annotated[int, typer.Option(min=1000, help="PPLNS window in shares")] = 1_000_000,
) -> None:
    """Share-log + aggregate ingest rate, and PPLNS payout time over a large window."""
    from hashquarry.bench.ingest import bench_ingest as run_ingest
    from hashquarry.bench.ingest import bench_pplns

    setup_logging("WARNING")
    result = {
        "ingest": asyncio.run(run_ingest(shares)),
        "pplns": asyncio.run(bench_pplns(window)),
    }
    typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


def load_or_exit(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"hashquarry: {exc}", err=True)
        raise typer.Exit(2) from None


def store_url(settings: Settings) -> str:
    from hashquarry.store.engine import default_url

    return settings.store.url or default_url(settings.data_dir)


@db_app.command("upgrade")
def db_upgrade(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")] = None,
) -> None:
    """Apply the store's migrations (SQLite file by default, PostgreSQL by URL)."""
    from hashquarry.store.migrate import upgrade

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"hashquarry: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_level)
    url = store_url(settings)
    upgrade(url)
    typer.echo(f"store at {url.split('@')[-1]} is up to date")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Every RPC call would be a line otherwise.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server.

    Per share the pool allocates a handful of short-lived objects that reference
    counting frees; the cyclic collector's default gen-0 threshold (700) still ran it
    thousands of times a second at high share rates, each pass walking the young
    objects. Everything alive after start-up (modules, config, templates) is frozen
    out of future collections, and collections run every 50,000 net allocations."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_async(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


def stop_event_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")] = None,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help="Stratum front-end processes sharing the ports")
    ] = 1,
    process_index: Annotated[int, typer.Option(hidden=True)] = 0,
) -> None:
    """Run the pool against the node in the configuration."""
    try:
        settings = load_settings(config)
        if processes > 1 and any(p.port == 0 for p in settings.stratum.ports):
            raise ConfigError("stratum.ports: --processes needs fixed port numbers, not 0")
        if processes > 1 and settings.accounting.enabled:
            # One accounting writer per store: several front ends need the share bus,
            # which is not built yet.
            raise ConfigError(
                "accounting.enabled: --processes > 1 needs accounting.enabled = false for now"
            )
        if settings.pool.extranonce1_prefix + processes - 1 > 255:
            raise ConfigError("pool.extranonce1_prefix: too high for this many processes")
    except ConfigError as exc:
        typer.echo(f"hashquarry: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log_level)
    # Each front end gets its own extranonce1 range, so no two miners share work.
    settings.pool.extranonce1_prefix += process_index
    children: list[subprocess.Popen[bytes]] = []
    if process_index == 0:
        for i in range(1, processes):
            cmd = [
                sys.executable,
                "-m",
                "hashquarry",
                "serve",
                "--processes",
                str(processes),
                "--process-index",
                str(i),
            ]
            if config is not None:
                cmd += ["--config", str(config)]
            children.append(subprocess.Popen(cmd))

    async def main() -> None:
        from hashquarry.pool import Pool
        from hashquarry.store.migrate import StoreNotMigrated, open_store

        stop = stop_event_on_signals()
        store = None
        if settings.accounting.enabled:
            try:
                store = await open_store(store_url(settings))
            except StoreNotMigrated as exc:
                logging.getLogger("hashquarry").error("%s", exc)
                raise SystemExit(2) from None
        pool = Pool(settings, store=store)
        await pool.start(reuse_port=processes > 1)
        tune_gc()
        logging.getLogger("hashquarry").info(
            "pool process %d running; stratum ports %s", process_index, pool.ports
        )
        api_task = None
        if settings.api.enabled and store is not None and process_index == 0:
            from hashquarry.api.app import create_app, serve_api
            from hashquarry.api.context import ApiContext

            app = create_app(
                ApiContext.for_pool(pool), rate=settings.api.rate, burst=settings.api.burst
            )
            api_task = asyncio.create_task(serve_api(app, settings.api.host, settings.api.port))
        if settings.metrics.port is not None and process_index == 0:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics.port, settings.metrics.host)
        await stop.wait()
        if api_task is not None:
            api_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await api_task
        await pool.stop()
        if store is not None:
            await store.dispose()

    try:
        run_async(main())
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()


@node_app.command("regtest")
def node_regtest(
    datadir: Annotated[Path | None, typer.Option(help="keep the chain here")] = None,
) -> None:
    """Provision and run a regtest node in the foreground; print how to reach it."""
    setup_logging()
    from hashquarry.chain.regtest import RegtestNode

    node = RegtestNode(datadir)
    node.start()
    try:
        address = node.call("getnewaddress")
        typer.echo(
            orjson.dumps(
                {
                    "rpc_url": node.rpc_url,
                    "rpc_user": node.user,
                    "rpc_password": node.password,
                    "zmq_hashblock": node.zmq_url,
                    "datadir": str(node.datadir),
                    "height": node.call("getblockcount"),
                    "pool_address": address,
                    "network": "regtest",
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        typer.echo(
            "\nTry the pool against it:\n"
            f"  HASHQUARRY_NODE__URL={node.rpc_url} HASHQUARRY_NODE__USER={node.user} "
            f"HASHQUARRY_NODE__PASSWORD={node.password} "
            f"HASHQUARRY_NODE__ZMQ_HASHBLOCK={node.zmq_url} "
            f"HASHQUARRY_POOL__ADDRESS={address} HASHQUARRY_POOL__NETWORK=regtest "
            "hashquarry serve\n"
            "(the first time, `hashquarry db upgrade` with the same variables creates the store)\n"
            "\nand mine on it (a CPU miner needs a tiny share difficulty; every share is a "
            "block on regtest):\n"
            f"  hashquarry miner --url stratum+tcp://127.0.0.1:3333 --user {address}.rig1 "
            "--password d=0.0001\n\nCtrl-C stops the node.",
            err=True,
        )
        stop_signals = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        # Blocked first, so they are delivered to sigwait instead of killing us before
        # the node is stopped.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    finally:
        node.close()


@app.command()
def miner(
    url: Annotated[str, typer.Option(help="stratum+tcp://HOST:PORT")],
    user: Annotated[list[str], typer.Option(help="account.worker; repeat for more workers")],
    password: Annotated[str, typer.Option(help="e.g. x, or d=0.01 for a fixed difficulty")] = "x",
    seconds: Annotated[float | None, typer.Option(help="stop after this long")] = None,
    version_rolling: Annotated[bool, typer.Option(help="roll BIP 320 version bits")] = False,
    suggest_difficulty: Annotated[float | None, typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """The built-in CPU miner. Prints one line of JSON with its results when it stops."""
    setup_logging("INFO" if verbose else "WARNING")
    from hashquarry.miner.runner import MinerOptions, parse_url, run_miner

    try:
        parse_url(url)
    except ValueError as exc:
        typer.echo(f"hashquarry miner: --url: {exc}", err=True)
        raise typer.Exit(2) from None
    opts = MinerOptions(
        url=url,
        users=list(user),
        password=password,
        seconds=seconds,
        version_rolling=version_rolling,
        suggest_difficulty=suggest_difficulty,
    )

    async def main() -> None:
        stop = stop_event_on_signals()
        result = await run_miner(opts, stop=stop)
        typer.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())

    run_async(main())


@app.command()
def demo(
    seconds: Annotated[float | None, typer.Option(help="run this long, then stop")] = None,
    miners: Annotated[int, typer.Option(min=1, max=8, help="miner processes")] = 2,
) -> None:
    """Regtest node + pool + built-in miners under two accounts, with live progress."""
    from hashquarry.cli.demo import run_demo

    setup_logging("WARNING")
    result = run_demo(seconds=seconds, miner_processes=miners)
    typer.echo(orjson.dumps(result).decode())


@bench_app.command("api")
def bench_api(
    rate: Annotated[float, typer.Option(min=1, help="requests per second offered")] = 500.0,
    seconds: Annotated[float, typer.Option(min=1, help="per endpoint")] = 10.0,
) -> None:
    """Requests/s and p50/p99 latency of f2pool hash_rate/info, worker/list (1,000 workers)
    and Bitminter /api/pool/stats, with the load from a separate process."""
    from hashquarry.bench.api import run

    setup_logging("WARNING")
    typer.echo(orjson.dumps(run(rate, seconds), option=orjson.OPT_INDENT_2).decode())


def _mount() -> None:
    from hashquarry.accounts.cli import apikey_app, owner_app, user_app
    from hashquarry.bench.cli import stratum as bench_stratum
    from hashquarry.cli.payouts_cmd import payout_app
    from hashquarry.distribution.cli import distribution_app

    bench_app.command("stratum")(bench_stratum)
    app.add_typer(payout_app, name="payout")
    app.add_typer(owner_app, name="owner")
    app.add_typer(apikey_app, name="apikey")
    app.add_typer(user_app, name="user")
    app.add_typer(distribution_app, name="distribution")


_mount()

if __name__ == "__main__":
    app()
