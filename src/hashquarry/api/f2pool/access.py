"""Who is asking, for what, about whom: keys and scopes, currencies, users, money.

A request's key is authenticated once (`requires`), its currency must be the one this pool
runs, and every mining user or address it names must belong to the key's owner: one that
does not is a permission error, worded the same as a missing one.

Money is integer base units inside; this module is where it becomes f2pool's shapes (a
double of coins for amounts, a decimal string of coins for thresholds) and back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fastapi import Security
from fastapi.security import APIKeyHeader

from hashquarry.accounts import names
from hashquarry.accounts.errors import AccountsError
from hashquarry.accounts.keys import Scope
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import queries
from hashquarry.api.f2pool.errors import (
    FORBIDDEN,
    INVALID_SECRET,
    MISSING_PARAMETER,
    PERMISSION_DENIED,
    UNAUTHORIZED,
    UNSUPPORTED_CURRENCY,
    F2PoolError,
    invalid,
)

HEADER = "F2P-API-SECRET"
COIN = 100_000_000  # base units per coin (8 decimals: bitcoin, bitcoin-cash, litecoin)
DECIMALS = 8

api_key = APIKeyHeader(
    name=HEADER,
    scheme_name="F2P-API-SECRET",
    description="The API secret of an owner's key (`hashquarry apikey create`).",
    auto_error=False,
)


@dataclass(frozen=True)
class Caller:
    owner: str
    scopes: frozenset[Scope]

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes


def requires(ctx: ApiContext, scope: Scope | None) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller of a live key holding `scope` (None: any live key)."""

    async def caller(secret: str | None = Security(api_key)) -> Caller:
        if not secret:
            raise F2PoolError(UNAUTHORIZED, f"the {HEADER} header with an API secret is required")
        found = await ctx.accounts.authenticate(secret)
        if found is None:
            raise F2PoolError(
                INVALID_SECRET, "the API secret is not valid (unknown, revoked or disabled)"
            )
        if scope is not None and scope not in found.scopes:
            raise F2PoolError(FORBIDDEN, f"this API key lacks the {scope.value!r} scope")
        return Caller(found.owner, found.scopes)

    return caller


def check_currency(ctx: ApiContext, currency: str, field: str = "currency") -> str:
    """The pool's currency (f2pool's name for it), or a clear error."""
    if currency == ctx.coin:
        return currency
    if currency in names.F2POOL_CURRENCIES:
        reason = f"{currency!r} is not mined on this pool (it runs {ctx.coin!r})"
    else:
        reason = f"unknown currency {currency!r}; this pool runs {ctx.coin!r} (f2pool names)"
    raise F2PoolError(UNSUPPORTED_CURRENCY, f"{field}: {reason}")


def not_owned(field: str, name: str) -> F2PoolError:
    """The same words for another owner's user and a missing one."""
    return F2PoolError(
        PERMISSION_DENIED,
        f"{field}: mining user {name!r} not found among this API key's mining users",
    )


def check_name(name: str, field: str) -> str:
    problem = names.mining_user_name_problem(name)
    if problem is not None:
        raise invalid(field, f"{name!r} {problem}")
    return name


async def owned_user(ctx: ApiContext, caller: Caller, name: str, field: str) -> str:
    """`name`, if it is one of the caller's owner's mining users."""
    check_name(name, field)
    async with ctx.engine.connect() as conn:
        found = await queries.owned_among(conn, caller.owner, [name])
    if name not in found:
        raise not_owned(field, name)
    return name


async def accounts_of(
    ctx: ApiContext,
    caller: Caller,
    requests: Sequence[tuple[str, str | None, str | None]],
    prefix: Callable[[int], str] = lambda i: "",
) -> list[str]:
    """The ledger account each (currency, mining_user_name, address) means: the user, or
    the key owner's mining user whose wallet for the currency is the address. Exactly one
    of the two; names are checked together in one query."""
    named: list[tuple[int, str]] = []
    addressed: list[tuple[int, str, str]] = []
    for i, (currency, user, address) in enumerate(requests):
        where = prefix(i)
        check_currency(ctx, currency, where + "currency")
        if user and address:
            raise invalid(where + "address", "send only one of mining_user_name and address")
        if user:
            named.append((i, check_name(user, where + "mining_user_name")))
        elif address:
            try:
                canonical = names.normalize_address(currency, address, ctx.accounts.networks)
            except AccountsError as exc:
                raise invalid(where + "address", exc.reason) from None
            addressed.append((i, currency, canonical))
        else:
            raise F2PoolError(
                MISSING_PARAMETER, f"{where}mining_user_name or {where}address is required"
            )
    out: list[str] = [""] * len(requests)
    async with ctx.engine.connect() as conn:
        owned = await queries.owned_among(conn, caller.owner, [u for _, u in named])
        for i, user in named:
            if user not in owned:
                raise not_owned(prefix(i) + "mining_user_name", user)
            out[i] = user
        for i, currency, address in addressed:
            found = await queries.user_by_address(conn, caller.owner, currency, address)
            if found is None:
                raise F2PoolError(
                    PERMISSION_DENIED,
                    f"{prefix(i)}address: {requests[i][2]!r} is not the {currency} wallet of "
                    "any of this API key's mining users",
                )
            out[i] = found
    return out


async def account_of(
    ctx: ApiContext, caller: Caller, currency: str, user: str | None, address: str | None
) -> str:
    return (await accounts_of(ctx, caller, [(currency, user, address)]))[0]


# -- money ---------------------------------------------------------------------------


def coins(base_units: int | float) -> float:
    """Base units as a double of coins (int / int division is correctly rounded)."""
    return int(base_units) / COIN


def coin_string(base_units: int) -> str:
    """Base units as f2pool's threshold string: plain decimal coins, no trailing zeros."""
    text = format(Decimal(int(base_units)).scaleb(-DECIMALS), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_coins(value: object, field: str) -> int:
    """A decimal amount of coins (a string, as f2pool sends thresholds, or a number) in
    base units: exact, at most 8 decimals, not negative."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise invalid(field, f"must be a decimal string of coins such as '0.01', not {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(field, f"{value!r} is not a decimal number of coins") from None
    if not amount.is_finite():
        raise invalid(field, f"{value!r} is not a finite number of coins")
    units = amount.scaleb(DECIMALS)
    if units != units.to_integral_value():
        raise invalid(field, f"{value!r} has more than {DECIMALS} decimal places")
    if units < 0:
        raise invalid(field, f"{value!r} is negative")
    if units > names.MAX_MONEY:
        raise invalid(field, f"{value!r} is more than 21 million coins")
    return int(units)


def day_start(day: str | None) -> int:
    """'YYYY-MM-DD' (UTC) as the Unix time of its midnight; 0 for none."""
    if not day:
        return 0
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC).timestamp())
