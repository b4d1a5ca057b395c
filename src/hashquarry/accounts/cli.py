"""`hashquarry owner|apikey|user ...`: the accounts service from the command line.

Each command reads the configuration (`--config`), opens the migrated store, runs one
service call and prints the result: one JSON object for changes, a table for lists
(`--json` for JSON). Bad input is printed to stderr as `hashquarry: field: reason` with
exit code 2, and nothing is changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import orjson
import typer

from hashquarry.accounts.models import ApiKey, MiningUser, Owner, Page, Wallet
from hashquarry.accounts.pages import format_permissions

if TYPE_CHECKING:  # the service (and SQLAlchemy) are imported only when a command runs
    from hashquarry.accounts.service import AccountsService

T = TypeVar("T")

owner_app = typer.Typer(
    help="Owners: the customers who hold API keys and mining users.", no_args_is_help=True
)
apikey_app = typer.Typer(
    help="API keys of an owner (shown once, stored as a hash).", no_args_is_help=True
)
user_app = typer.Typer(
    help="Mining users (sub-accounts): wallets, payments, pages, modes.", no_args_is_help=True
)

Config = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")]
OwnerOpt = Annotated[str, typer.Option("--owner", "-o", help="owner name")]
CurrencyOpt = Annotated[
    str | None, typer.Option("--currency", help="f2pool currency name (default: pool.coin)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"hashquarry: {message}", err=True)
    raise typer.Exit(2)


def _call(config: Path | None, action: Callable[[AccountsService], Awaitable[T]]) -> T:
    # Imported here: hashquarry.cli.main mounts these apps, so a top-level import of it
    # would be circular, and the store stack is only needed once a command runs.
    from hashquarry.accounts.errors import AccountsError
    from hashquarry.accounts.service import AccountsService
    from hashquarry.cli.main import store_url
    from hashquarry.config import ConfigError, load_settings
    from hashquarry.store.migrate import StoreNotMigrated, open_store

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))

    async def main() -> T:
        engine = await open_store(store_url(settings))
        try:
            return await action(AccountsService.from_settings(engine, settings))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (AccountsError, StoreNotMigrated) as exc:
        _fail(str(exc))


def _currency(service: AccountsService, currency: str | None) -> str:
    return currency if currency is not None else next(iter(service.networks))


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value).decode())


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


def owner_json(o: Owner) -> dict[str, Any]:
    return {"owner": o.name, "created_at": int(o.created_at), "disabled": o.disabled}


def key_json(k: ApiKey) -> dict[str, Any]:
    return {
        "key_id": k.id,
        "prefix": k.prefix,
        "scopes": sorted(k.scopes),
        "created_at": int(k.created_at),
        "revoked_at": None if k.revoked_at is None else int(k.revoked_at),
        "last_used_at": None if k.last_used_at is None else int(k.last_used_at),
    }


def wallet_json(w: Wallet) -> dict[str, Any]:
    return {
        "currency": w.currency,
        "address": w.address,
        "threshold": w.threshold,
        "paused": w.paused,
        "updated_at": int(w.updated_at),
    }


def page_json(p: Page) -> dict[str, Any]:
    return {
        "key": p.key,
        "page_name": p.page_name,
        "permissions": format_permissions(p.permissions),
        "created_at": int(p.created_at),
    }


def user_json(u: MiningUser) -> dict[str, Any]:
    return {
        "mining_user_name": u.name,
        "description": u.description,
        "created_at": int(u.created_at),
        "wallets": [wallet_json(w) for w in u.wallets],
        "pages": [page_json(p) for p in u.pages],
    }


# -- owners ------------------------------------------------------------------------------


@owner_app.command("create")
def owner_create(name: str, config: Config = None) -> None:
    """Create an owner."""
    _print_json(owner_json(_call(config, lambda s: s.create_owner(name))))


@owner_app.command("list")
def owner_list(config: Config = None, as_json: JsonOpt = False) -> None:
    """List the owners."""
    owners = _call(config, lambda s: s.list_owners())
    if as_json:
        _print_json([owner_json(o) for o in owners])
        return
    rows = [[o.name, int(o.created_at), "yes" if o.disabled else ""] for o in owners]
    _table("owners", ["owner", "created_at", "disabled"], rows)


@owner_app.command("disable")
def owner_disable(name: str, config: Config = None) -> None:
    """Refuse an owner's API keys, read-only pages and miners (its data stays)."""
    _print_json(owner_json(_call(config, lambda s: s.set_owner_disabled(name, True))))


@owner_app.command("enable")
def owner_enable(name: str, config: Config = None) -> None:
    """Undo `disable`."""
    _print_json(owner_json(_call(config, lambda s: s.set_owner_disabled(name, False))))


# -- API keys ----------------------------------------------------------------------------


@apikey_app.command("create")
def apikey_create(
    owner: OwnerOpt,
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            "-s",
            help="read_hashrate, read_revenue, read_payments, manage_accounts, "
            "manage_payouts, manage_distributions, manage_schedulers, or all (repeatable)",
        ),
    ],
    config: Config = None,
) -> None:
    """Create a key; its secret is printed once and cannot be shown again."""
    key_id, secret = _call(config, lambda s: s.create_api_key(owner, scope))
    typer.echo("store this secret now: only its hash is kept", err=True)
    _print_json({"key_id": key_id, "owner": owner, "secret": secret})


@apikey_app.command("list")
def apikey_list(owner: OwnerOpt, config: Config = None, as_json: JsonOpt = False) -> None:
    """List an owner's keys (prefixes only)."""
    found = _call(config, lambda s: s.list_api_keys(owner))
    if as_json:
        _print_json([key_json(k) for k in found])
        return
    columns = ["key_id", "prefix", "scopes", "created_at", "revoked_at", "last_used_at"]
    _table(f"API keys of {owner}", columns, [list(key_json(k).values()) for k in found])


@apikey_app.command("revoke")
def apikey_revoke(owner: OwnerOpt, key_id: int, config: Config = None) -> None:
    """Revoke a key: it is refused from now on."""
    _call(config, lambda s: s.revoke_api_key(owner, key_id))
    _print_json({"key_id": key_id, "revoked": True})


# -- mining users ------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    owner: OwnerOpt,
    name: str,
    description: Annotated[str, typer.Option(help="free text")] = "",
    config: Config = None,
) -> None:
    """Add a mining user (2-15 lowercase letters or digits, beginning with a letter)."""
    _print_json(user_json(_call(config, lambda s: s.add_mining_user(owner, name, description))))


@user_app.command("list")
def user_list(owner: OwnerOpt, config: Config = None, as_json: JsonOpt = False) -> None:
    """List an owner's mining users with their wallets and read-only pages."""
    found = _call(config, lambda s: s.list_mining_users(owner))
    if as_json:
        _print_json([user_json(u) for u in found])
        return
    rows = []
    for u in found:
        wallets = "\n".join(
            f"{w.currency}: {w.address or '-'} >= {w.threshold}{' (paused)' if w.paused else ''}"
            for w in u.wallets
        )
        rows.append([u.name, u.description, wallets, len(u.pages)])
    _table(f"mining users of {owner}", ["name", "description", "wallets", "pages"], rows)


@user_app.command("wallet")
def user_wallet(
    owner: OwnerOpt,
    user: str,
    address: Annotated[str, typer.Option(help="payout address for the currency's network")],
    currency: CurrencyOpt = None,
    threshold: Annotated[int | None, typer.Option(help="payout threshold, base units")] = None,
    config: Config = None,
) -> None:
    """Set a mining user's wallet address (and threshold) for a currency."""

    async def action(s: AccountsService) -> Wallet:
        return await s.update_wallet(owner, user, _currency(s, currency), address, threshold)

    _print_json({"mining_user_name": user, **wallet_json(_call(config, action))})


def _pause(
    owner: str, users: list[str], currency: str | None, paused: bool, config: Path | None
) -> None:
    async def action(s: AccountsService) -> tuple[str, list[str]]:
        chosen = _currency(s, currency)
        if paused:
            return chosen, await s.pause_payments(owner, users, chosen)
        return chosen, await s.resume_payments(owner, users, chosen)

    chosen, done = _call(config, action)
    _print_json({"currency": chosen, "paused": paused, "results": {u: "true" for u in done}})


@user_app.command("pause")
def user_pause(
    owner: OwnerOpt, users: list[str], currency: CurrencyOpt = None, config: Config = None
) -> None:
    """Pause payments of these users (all or none)."""
    _pause(owner, users, currency, True, config)


@user_app.command("resume")
def user_resume(
    owner: OwnerOpt, users: list[str], currency: CurrencyOpt = None, config: Config = None
) -> None:
    """Resume payments of these users (all or none)."""
    _pause(owner, users, currency, False, config)


@user_app.command("threshold")
def user_threshold(
    owner: OwnerOpt,
    user: str,
    threshold: int,
    currency: CurrencyOpt = None,
    config: Config = None,
) -> None:
    """Set a user's payout threshold in base units."""

    async def action(s: AccountsService) -> tuple[str, int]:
        chosen = _currency(s, currency)
        return chosen, await s.update_threshold(owner, user, chosen, threshold)

    chosen, value = _call(config, action)
    _print_json({"mining_user_name": user, "currency": chosen, "threshold": value})


@user_app.command("page-add")
def user_page_add(
    owner: OwnerOpt,
    user: str,
    permissions: Annotated[
        str,
        typer.Option(help="comma list: 1 hashrate+workers, 2 revenue+payments, 3 revenue"),
    ],
    name: Annotated[str, typer.Option("--name", help="page name")] = "",
    config: Config = None,
) -> None:
    """Create a read-only page; prints its random key."""
    page = _call(config, lambda s: s.add_page(owner, user, name, permissions))
    _print_json({"mining_user_name": user, "page": page_json(page)})


@user_app.command("page-delete")
def user_page_delete(owner: OwnerOpt, user: str, key: str, config: Config = None) -> None:
    """Delete a read-only page: its key stops working."""
    _call(config, lambda s: s.delete_page(owner, user, key))
    _print_json({"mining_user_name": user, "key": key, "deleted": True})


@user_app.command("settle-mode")
def user_settle_mode(
    owner: OwnerOpt,
    user: str,
    mode: Annotated[str, typer.Option(help="pps, fpps, pplns, prop or solo")],
    currency: CurrencyOpt = None,
    activate_at: Annotated[
        float | None, typer.Option(help="Unix seconds (default: next 00:00 UTC)")
    ] = None,
    config: Config = None,
) -> None:
    """Switch a user's settle mode from a time on."""

    async def action(s: AccountsService) -> tuple[str, Any]:
        chosen = _currency(s, currency)
        return chosen, await s.switch_settle_mode(owner, user, chosen, mode, activate_at)

    chosen, switch = _call(config, action)
    _print_json(
        {
            "mining_user_name": user,
            "currency": chosen,
            "mode": switch.mode,
            "activated_at": int(switch.activate_at),
        }
    )
