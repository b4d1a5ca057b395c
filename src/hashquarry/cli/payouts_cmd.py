"""`hashquarry payout ...`: run payouts, withdraw, list."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import orjson
import typer

payout_app = typer.Typer(help="Payouts through the node's wallet.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")]


async def _with_engine(config: Path | None, action: str, accounts: list[str]) -> object:
    from hashquarry.chain.rpc import NodeRpc
    from hashquarry.cli.main import load_or_exit, store_url
    from hashquarry.payouts.service import build_engine
    from hashquarry.store.migrate import open_store

    settings = load_or_exit(config)
    store = await open_store(store_url(settings))
    node = settings.node
    rpc = NodeRpc(node.url, node.user, node.password, timeout=node.rpc_timeout)
    try:
        engine = build_engine(settings, store, rpc)
        if action == "run":
            reconciled = await engine.reconcile()
            result = await engine.run_once()
            tracked = await engine.track()
            return {
                "reconciled": reconciled,
                "payout": result.__dict__ if result else None,
                "confirmed": tracked,
            }
        if action == "withdraw":
            return (await engine.withdraw(accounts)).__dict__
        if action == "reconcile":
            return {"reconciled": await engine.reconcile()}
        raise ValueError(action)
    finally:
        await rpc.close()
        await store.dispose()


@payout_app.command("run")
def run(config: ConfigOpt = None) -> None:
    """Reconcile intents left by a crash, pay every due balance, follow confirmations."""
    out = asyncio.run(_with_engine(config, "run", []))
    typer.echo(orjson.dumps(out).decode())


@payout_app.command("withdraw")
def withdraw(accounts: list[str], config: ConfigOpt = None) -> None:
    """Pay these accounts their whole balance now (f2pool balance/withdraw)."""
    from hashquarry.payouts.engine import PayoutError

    try:
        out = asyncio.run(_with_engine(config, "withdraw", accounts))
    except PayoutError as exc:
        typer.echo(f"hashquarry payout withdraw: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(orjson.dumps(out).decode())


@payout_app.command("reconcile")
def reconcile(config: ConfigOpt = None) -> None:
    """Only settle payout intents left by a crash."""
    typer.echo(orjson.dumps(asyncio.run(_with_engine(config, "reconcile", []))).decode())
