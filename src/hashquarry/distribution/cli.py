"""`hashquarry distribution hashrate|revenue ...`: the distribution service from the
command line, one sub-command per f2pool endpoint (hash_rate/distribution/info, distribute,
orders, settlements, terminate; revenue/distribution/add, info, delete).

Like `hashquarry user ...` (accounts/cli.py): each command reads the configuration, opens
the migrated store, makes one service call as the given owner and prints one JSON object
for a change or a table for a list (`--json` for JSON). Options carry the f2pool field
names (`--start-date` is `start_date`), so an error names the option to fix:
`hashquarry: --hash-rate: reason` on stderr, exit code 2, nothing changed.

Times are Unix seconds or ISO 8601 (`2027-01-15T08:00:00Z`; no zone means UTC);
hashrates are H/s, with an optional SI prefix (`250T`, `1.5PH/s`).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hashquarry.accounts.cli import _fail, _print_json, _table
from hashquarry.distribution.models import HashrateOrder, HashrateSettlement, RevenueShare

if TYPE_CHECKING:  # the services (and SQLAlchemy) are imported only when a command runs
    from hashquarry.distribution.service import DistributionService

T = TypeVar("T")

distribution_app = typer.Typer(
    help="Hashrate orders and revenue distributions between an owner's mining users.",
    no_args_is_help=True,
)
hashrate_app = typer.Typer(
    help="Hashrate distribution: sell H/s of a distributor's work to a recipient.",
    no_args_is_help=True,
)
revenue_app = typer.Typer(
    help="Revenue distribution: give a recipient a proportion of a distributor's revenue.",
    no_args_is_help=True,
)
distribution_app.add_typer(hashrate_app, name="hashrate")
distribution_app.add_typer(revenue_app, name="revenue")

Config = Annotated[Path | None, typer.Option("--config", "-c", help="TOML file")]
OwnerOpt = Annotated[str, typer.Option("--owner", "-o", help="owner of both mining users")]
CurrencyOpt = Annotated[
    str | None, typer.Option("--currency", help="f2pool currency name (default: pool.coin)")
]
DistributorOpt = Annotated[str, typer.Option("--distributor", help="mining user who gives")]
RecipientOpt = Annotated[str, typer.Option("--recipient", help="mining user who receives")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
TimeOpt = Annotated[str, typer.Option(help="Unix seconds or ISO 8601 (UTC if no zone)")]
RateOpt = Annotated[str, typer.Option("--hash-rate", help="H/s, e.g. 250000000000000 or 250T")]

# The service's field names (f2pool's) -> what to fix on this command line.
OPTIONS = {
    "currency": "--currency",
    "owner": "--owner",
    "distributor": "--distributor",
    "recipient": "--recipient",
    "hash_rate": "--hash-rate",
    "start_date": "--start-date",
    "end_date": "--end-date",
    "terminate_at": "--at",
    "order_id": "ORDER_ID",
    "id": "ID",
    "proportion": "--proportion",
    "description": "--description",
}


def _call(config: Path | None, action: Callable[[DistributionService, str], Awaitable[T]]) -> T:
    """Run `action(service, default currency)` on the configured store."""
    from hashquarry.accounts.errors import AccountsError
    from hashquarry.accounts.service import AccountsService
    from hashquarry.cli.main import store_url
    from hashquarry.config import ConfigError, load_settings
    from hashquarry.distribution.service import DistributionService
    from hashquarry.store.migrate import StoreNotMigrated, open_store

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(str(exc))

    async def main() -> T:
        engine = await open_store(store_url(settings))
        try:
            accounts = AccountsService.from_settings(engine, settings)
            return await action(DistributionService(engine, accounts), settings.pool.coin)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AccountsError as exc:
        _fail(f"{OPTIONS.get(exc.field, exc.field)}: {exc.reason}")
    except StoreNotMigrated as exc:
        _fail(str(exc))


def parse_time(value: str, option: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it names a zone)."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            _fail(f"{option}: {value!r} is neither Unix seconds nor an ISO 8601 time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    if not math.isfinite(seconds):
        _fail(f"{option}: {value!r} is not a time")
    return seconds


_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKMGTPE]?)(?:H(?:/s)?)?\s*$")
_PREFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_hash_rate(value: str) -> float:
    """H/s from `250000000000000`, `250T`, `250TH/s` or `1.5P`."""
    found = _RATE.match(value)
    if found is None:
        _fail(f"--hash-rate: {value!r} is not a hashrate (H/s, e.g. 250000000000000 or 250T)")
    return float(found.group(1)) * _PREFIX[found.group(2)]


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def show_rate(hps: float) -> str:
    """H/s for a table, with an SI prefix: `4.295 GH/s` (JSON keeps the exact H/s)."""
    for prefix in ("E", "P", "T", "G", "M", "k"):
        if hps >= _PREFIX[prefix]:
            return f"{hps / _PREFIX[prefix]:.4g} {prefix}H/s"
    return f"{hps:.4g} H/s"


def order_json(o: HashrateOrder, now: float) -> dict[str, Any]:
    return {
        "id": o.id,
        "currency": o.coin,
        "distributor": o.distributor,
        "recipient": o.recipient,
        "hash_rate": o.hash_rate,
        "start_date": int(o.start_at),
        "end_date": int(o.end_at),
        "terminate_at": 0 if o.terminate_at is None else int(o.terminate_at),
        "state": o.state(now),
    }


def settlement_json(s: HashrateSettlement, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "order": order_json(s.order, now),
        "period_start": int(s.period_start),
        "period_end": int(s.period_end),
        "hashes": s.hashes,
        "income": s.income,
        "distributor_hashes": s.distributor_hashes,
        "distributor_income": s.distributor_income,
        "timestamp": int(s.settled_at),
    }


def share_json(r: RevenueShare) -> dict[str, Any]:
    return {
        "id": r.id,
        "currency": r.coin,
        "distributor": r.distributor,
        "recipient": r.recipient,
        "description": r.description,
        "proportion": r.proportion,
        "created_at": int(r.created_at),
        "deleted_at": None if r.deleted_at is None else int(r.deleted_at),
    }


# -- hashrate distribution ------------------------------------------------------------------


@hashrate_app.command("info")
def hashrate_info(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    start_date: TimeOpt,
    end_date: TimeOpt,
    hash_rate: Annotated[
        str, typer.Option("--hash-rate", help="the H/s you mean to sell (checked only)")
    ] = "1",
    recipient: Annotated[str | None, typer.Option(help="check this recipient too")] = None,
    currency: CurrencyOpt = None,
    config: Config = None,
) -> None:
    """The distributor's hashrate now, the most already sold in the window, what is left."""
    lo, hi = parse_time(start_date, "--start-date"), parse_time(end_date, "--end-date")
    rate = parse_hash_rate(hash_rate)
    info = _call(
        config,
        lambda s, coin: s.hashrate_info(
            owner, currency or coin, distributor, rate, lo, hi, recipient
        ),
    )
    _print_json(
        {
            "current_hash_rate": info.current_hash_rate,
            "sold_hash_rate": info.sold_hash_rate,
            "remaining_hash_rate": info.remaining_hash_rate,
        }
    )


@hashrate_app.command("create")
def hashrate_create(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    recipient: RecipientOpt,
    hash_rate: RateOpt,
    start_date: TimeOpt,
    end_date: TimeOpt,
    currency: CurrencyOpt = None,
    config: Config = None,
) -> None:
    """Sell H/s of the distributor's work to the recipient over [start, end) (f2pool
    hash_rate/distribute); refused if it would oversell the distributor's hashrate now."""
    lo, hi = parse_time(start_date, "--start-date"), parse_time(end_date, "--end-date")
    rate = parse_hash_rate(hash_rate)
    order = _call(
        config,
        lambda s, coin: s.distribute(owner, currency or coin, distributor, recipient, rate, lo, hi),
    )
    _print_json(order_json(order, time.time()))


@hashrate_app.command("orders")
def hashrate_orders(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    currency: CurrencyOpt = None,
    config: Config = None,
    as_json: JsonOpt = False,
) -> None:
    """List the distributor's orders with their state now."""
    found = _call(config, lambda s, coin: s.orders(owner, currency or coin, distributor))
    now = time.time()
    if as_json:
        _print_json([order_json(o, now) for o in found])
        return
    rows = [
        [o.id, o.recipient, show_rate(o.hash_rate), _iso(o.start_at), _iso(o.end_at),
         _iso(o.terminate_at), o.state(now)]
        for o in found
    ]  # fmt: skip
    columns = ["id", "recipient", "hash_rate", "start (UTC)", "end", "terminated", "state"]
    _table(f"hashrate orders of {distributor}", columns, rows)


@hashrate_app.command("settlements")
def hashrate_settlements(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    currency: CurrencyOpt = None,
    config: Config = None,
    as_json: JsonOpt = False,
) -> None:
    """List the daily settlements of the distributor's orders."""
    found = _call(config, lambda s, coin: s.settlements(owner, currency or coin, distributor))
    now = time.time()
    if as_json:
        _print_json([settlement_json(x, now) for x in found])
        return
    rows = [
        [x.id, x.order.id, x.order.recipient, _iso(x.period_start)[:10], f"{x.hashes:.4g}",
         x.income]
        for x in found
    ]  # fmt: skip
    # The distributor's figures and the settlement time are in --json.
    columns = ["id", "order", "recipient", "day (UTC)", "hashes", "income"]
    _table(f"hashrate settlements of {distributor}", columns, rows)


@hashrate_app.command("terminate")
def hashrate_terminate(
    owner: OwnerOpt,
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID")],
    at: Annotated[str | None, typer.Option(help="end time (default: now)")] = None,
    config: Config = None,
) -> None:
    """End an order early; its whole days before then are settled now."""
    when = None if at is None else parse_time(at, "--at")

    async def action(s: DistributionService, _coin: str) -> HashrateOrder:
        # The id goes in as typed: the service checks it and names the field.
        return await s.terminate(owner, order_id, when)  # type: ignore[arg-type]

    order = _call(config, action)
    _print_json(order_json(order, time.time()))


# -- revenue distribution -------------------------------------------------------------------


@revenue_app.command("add")
def revenue_add(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    recipient: RecipientOpt,
    proportion: Annotated[str, typer.Option(help="0 < p <= 1, at most 6 decimals, e.g. 0.3")],
    description: Annotated[str, typer.Option(help="free text")] = "",
    currency: CurrencyOpt = None,
    config: Config = None,
) -> None:
    """Give the recipient a proportion of the distributor's revenue from now on."""
    share = _call(
        config,
        lambda s, coin: s.revenue_add(
            owner, currency or coin, distributor, recipient, proportion, description
        ),
    )
    _print_json(share_json(share))


def revenue_list(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    recipient: Annotated[str | None, typer.Option(help="only to this recipient")] = None,
    currency: CurrencyOpt = None,
    config: Config = None,
    as_json: JsonOpt = False,
) -> None:
    """List the distributor's revenue distributions in force (f2pool revenue/distribution/info)."""
    found = _call(
        config, lambda s, coin: s.revenue_info(owner, currency or coin, distributor, recipient)
    )
    if as_json:
        _print_json([share_json(r) for r in found])
        return
    rows = [[r.id, r.recipient, f"{r.proportion:g}", r.description, _iso(r.created_at)]
            for r in found]  # fmt: skip
    columns = ["id", "recipient", "proportion", "description", "since"]
    _table(f"revenue distributions of {distributor}", columns, rows)


revenue_app.command("list")(revenue_list)
revenue_app.command("info", help="Same as `list`.")(revenue_list)


@revenue_app.command("delete")
def revenue_delete(
    owner: OwnerOpt,
    distributor: DistributorOpt,
    distribution_id: Annotated[str, typer.Argument(metavar="ID")],
    config: Config = None,
) -> None:
    """Stop a revenue distribution from now on (days already settled keep theirs)."""

    async def action(s: DistributionService, _coin: str) -> RevenueShare:
        # The id goes in as typed: the service checks it and names the field.
        return await s.revenue_delete(owner, distributor, distribution_id)  # type: ignore[arg-type]

    share = _call(config, action)
    _print_json(share_json(share))
