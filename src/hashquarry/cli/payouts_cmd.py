"""`hashquarry payout ...`: run payouts, withdraw, reconcile, and list them for operators."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

payout_app = typer.Typer(help="Payouts through the node's wallet.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")]


SettleOpt = Annotated[
    float | None,
    typer.Option(
        "--settle-after",
        min=0,
        help="judge unanswered sendmany calls older than this many seconds now (e.g. 0 "
        "when the payer that sent them is known to be dead); default: [payouts] settle_after",
    ),
]


async def _with_engine(
    config: Path | None, action: str, accounts: list[str], settle_after: float | None = None
) -> object:
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
        if settle_after is not None:
            # An operator's explicit call for this one run, so not held to the
            # configuration's lower bound.
            engine.settle_after = settle_after
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
def run(config: ConfigOpt = None, settle_after: SettleOpt = None) -> None:
    """Reconcile intents left by a crash, pay every due balance, follow confirmations."""
    out = asyncio.run(_with_engine(config, "run", [], settle_after))
    typer.echo(orjson.dumps(out).decode())


@payout_app.command("withdraw")
def withdraw(accounts: list[str], config: ConfigOpt = None, settle_after: SettleOpt = None) -> None:
    """Pay these accounts their whole balance now (f2pool balance/withdraw)."""
    from hashquarry.payouts.engine import PayoutError

    try:
        out = asyncio.run(_with_engine(config, "withdraw", accounts, settle_after))
    except PayoutError as exc:
        typer.echo(f"hashquarry payout withdraw: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(orjson.dumps(out).decode())


@payout_app.command("reconcile")
def reconcile(config: ConfigOpt = None, settle_after: SettleOpt = None) -> None:
    """Only settle payout intents left by a crash."""
    out = asyncio.run(_with_engine(config, "reconcile", [], settle_after))
    typer.echo(orjson.dumps(out).decode())


StatusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-s",
        help="intent, sending, sent, confirmed, failed, conflicted, abandoned, or flagged "
        "(conflicted + abandoned + intent + sending); repeatable; default: all",
    ),
]


def wanted_statuses(given: Sequence[str] | None) -> tuple[str, ...] | None:
    """The statuses asked for (None: all); SystemExit 2 naming a status that is not one."""
    from hashquarry.payouts.book import FLAGGED, STATUSES

    if not given:
        return None
    out: list[str] = []
    for status in given:
        for name in FLAGGED if status == "flagged" else (status,):
            if name not in STATUSES:
                known = ", ".join((*STATUSES, "flagged"))
                typer.echo(
                    f"hashquarry payout list: --status: {status!r} is not one of {known}", err=True
                )
                raise typer.Exit(2)
            if name not in out:
                out.append(name)
    return tuple(out)


async def _listing(
    config: Path | None, statuses: tuple[str, ...] | None, limit: int
) -> list[dict[str, Any]]:
    from hashquarry.cli.main import load_or_exit, store_url
    from hashquarry.payouts.book import listing
    from hashquarry.store.migrate import open_store

    settings = load_or_exit(config)
    store = await open_store(store_url(settings))  # no node needed: the store says it all
    try:
        async with store.connect() as conn:
            return await listing(conn, settings.pool.coin, statuses, limit)
    finally:
        await store.dispose()


def _utc(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@payout_app.command("list")
def list_payouts(
    status: StatusOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="newest first, at most this many")] = 100,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """Payouts, newest first: id, status, total, created and sent times (UTC), txid, and
    the note of a failed or flagged one. `--status flagged` is the operator's to-do list."""
    from hashquarry.store.migrate import StoreNotMigrated

    statuses = wanted_statuses(status)
    try:
        found = asyncio.run(_listing(config, statuses, limit))
    except StoreNotMigrated as exc:
        typer.echo(f"hashquarry payout list: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(orjson.dumps(found).decode())
        return
    if not found:
        typer.echo("no payouts" + (f" with status {', '.join(statuses)}" if statuses else ""))
        return
    # Plain lines, not a table: ids and txids stay whole, for copying and grep.
    typer.echo(
        f"{'id':<32}  {'status':<10}  {'total':>14}  {'created (UTC)':<19}  "
        f"{'sent (UTC)':<19}  txid"
    )
    for p in found:
        typer.echo(
            f"{p['id']:<32}  {p['status']:<10}  {p['total']:>14}  {_utc(p['created_at']):<19}  "
            f"{_utc(p['sent_at']):<19}  {p['txid'] or '-'}"
        )
        paid = ", ".join(f"{a} {v}" for a, v in p["items"].items())
        typer.echo(f"    {p['kind']} to {paid}")
        if p["error"]:
            typer.echo(f"    note: {p['error']}")
