"""Assets: /v2/assets/balance, transactions/list and settle_mode/switch.

Balances come from the ledger (`accounting.ledger.balances`), so they are the ledger's
sums to the base unit. A transaction is one balance movement of the account: matured block
credits and settled PPS/FPPS days (`revenue_<scheme>`), payouts (`payout`, and
`payout_refund` if the wallet refused one), distribution dividends (`dividend`) and
rewards (`reward`). Immature credits are not transactions yet: they show in
`immature_balance` until the block matures.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from hashquarry.accounting.ledger import balances, mode_resolver
from hashquarry.accounts.keys import Scope
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool import queries
from hashquarry.api.f2pool.access import (
    Caller,
    account_of,
    check_currency,
    coins,
    day_start,
    owned_user,
    requires,
)
from hashquarry.api.f2pool.errors import FORBIDDEN, F2PoolError, invalid

TYPES = ("all", "revenue", "reward", "dividend", "flash_exchange", "payout")
PPS_MODES = ("pps", "fpps")


def parse_types(value: str | None) -> set[str] | None:
    """The requested types (None: all). Each is one of TYPES or a detailed type starting
    with one of them, such as revenue_pplns."""
    wanted = {t.strip().lower() for t in (value or "").split(",") if t.strip()}
    for t in wanted:
        if t not in TYPES and not any(t.startswith(base + "_") for base in TYPES[1:]):
            raise invalid("type", f"{t!r} is not a type; use a comma list of {', '.join(TYPES)}")
    return None if not wanted or "all" in wanted else wanted


def type_matches(kind: str, wanted: set[str] | None) -> bool:
    return wanted is None or any(kind == w or kind.startswith(w + "_") for w in wanted)


def register(r: APIRouter, ctx: ApiContext) -> None:
    revenue = Depends(requires(ctx, Scope.READ_REVENUE))
    manage = Depends(requires(ctx, Scope.MANAGE_ACCOUNTS))

    @r.post("/assets/balance", summary="Fetch current user's asset details")
    async def balance(body: f.UserMiningReq, caller: Caller = revenue) -> f.BalanceResp:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        async with ctx.engine.connect() as conn:
            found = (await balances(conn, ctx.coin, ctx.clock())).get(account)
        info = f.BalanceInfo(
            balance=coins(found.balance) if found else 0.0,
            immature_balance=coins(found.immature_balance) if found else 0.0,
            paid=coins(found.paid) if found else 0.0,
            total_income=coins(found.total_income) if found else 0.0,
            yesterday_income=coins(found.yesterday_income) if found else 0.0,
            estimated_today_income=coins(found.estimated_today_income) if found else 0.0,
        )
        return f.BalanceResp(balance_info=info)

    @r.post(
        "/assets/transactions/list",
        summary="Bill list",
        description="Newest first. `type` filters by a comma list (all, revenue, reward, "
        "dividend, flash_exchange, payout, or a detailed type such as revenue_pplns); "
        "payouts need the key's read_payments scope. start_time <= created_at < end_time.",
    )
    async def transactions(body: f.TransactionsReq, caller: Caller = revenue) -> f.TransactionsResp:
        account = await account_of(ctx, caller, body.currency, body.mining_user_name, body.address)
        wanted = parse_types(body.type)
        start, end = body.start_time, body.end_time
        for field, value in (("start_time", start), ("end_time", end)):
            if value is not None and value < 0:
                raise invalid(field, f"{value} is not a Unix timestamp")
        if start is not None and end is not None and end <= start:
            raise invalid("end_time", f"must be later than start_time ({end} <= {start})")
        payments = caller.has(Scope.READ_PAYMENTS)
        if not payments and wanted is not None and any(t.startswith("payout") for t in wanted):
            raise F2PoolError(FORBIDDEN, "payouts need the 'read_payments' scope")
        async with ctx.engine.connect() as conn:
            rows = await queries.ledger_entries(conn, ctx.coin, account, start, end)
            items = await _items(ctx, conn, account, rows)
        return f.TransactionsResp(
            transactions=[
                t
                for t in items
                if type_matches(t.type, wanted) and (payments or not t.type.startswith("payout"))
            ]
        )

    @r.post(
        "/assets/settle_mode/switch",
        summary="Settlement mode",
        description="mode: pps, fpps, pplns, prop or solo. activated_at: Unix seconds, not "
        "in the past (absent or 0: the next 00:00 UTC).",
    )
    async def settle_mode(body: f.SettleModeReq, caller: Caller = manage) -> f.SettleModeResp:
        name = await owned_user(ctx, caller, body.mining_user_name, "mining_user_name")
        check_currency(ctx, body.currency)
        switch = await ctx.accounts.switch_settle_mode(
            caller.owner, name, body.currency, body.mode, body.activated_at or None
        )
        return f.SettleModeResp(mode=switch.mode, activated_at=int(switch.activate_at))


async def _items(
    ctx: ApiContext, conn: Any, account: str, rows: list[Any]
) -> list[f.TransactionItem]:
    blocks = await queries.block_info(conn, [r.block_id for r in rows if r.block_id is not None])
    payout_ids = [_payout_id(r.ref) for r in rows if r.kind == "payout" and r.ref]
    paid = await queries.payout_items_of(conn, account, [p for p in payout_ids if p])
    days = [r.mining_date for r in rows if r.kind == "revenue" and r.mining_date]
    day_rates = await queries.day_hashrates(conn, ctx.coin, account, days)
    mode_of = await mode_resolver(conn, ctx.coin, ctx.settings.accounting.scheme)
    fee_rate = ctx.settings.accounting.fee_bps / 10_000
    out = []
    for r in rows:
        item = f.TransactionItem(
            id=int(r.id),
            type=str(r.kind),
            changed_balance=coins(r.amount),
            created_at=int(r.created_at),
        )
        if r.kind == "revenue":
            extra = dict(r.extra or {})
            if r.ref and r.ref.startswith("pps:"):
                mode = mode_of(account, day_start(r.mining_date))
                item.type = f"revenue_{mode if mode in PPS_MODES else 'pps'}"
                item.mining_extra = f.MiningExtra(
                    mining_date=day_start(extra.get("mining_date") or r.mining_date),
                    settle_date=day_start(extra.get("settle_date")) or int(r.created_at),
                    pps=coins(extra.get("pps", r.amount)),
                    pps_fee_rate=float(extra.get("pps_fee_rate", fee_rate)),
                    tx_fee=coins(extra.get("tx_fee", 0)),
                    tx_fee_rate=float(extra.get("tx_fee_rate", 0.0)),
                    hash_rate=float(extra.get("hash_rate", day_rates.get(r.mining_date, 0.0))),
                )
            else:
                block = blocks.get(r.block_id) if r.block_id is not None else None
                item.type = f"revenue_{block.scheme}" if block is not None else "revenue"
                # The credit split as the block's reward is: subsidy part and fee part.
                fee_part = 0
                if block is not None and block.income:
                    fee_part = int(r.amount) * int(block.tx_fees) // int(block.income)
                item.mining_extra = f.MiningExtra(
                    mining_date=day_start(r.mining_date),
                    settle_date=day_start(_day(r.created_at)),
                    pps=coins(int(r.amount) - fee_part),
                    pps_fee_rate=fee_rate,
                    tx_fee=coins(fee_part),
                    tx_fee_rate=fee_rate,
                    hash_rate=day_rates.get(r.mining_date or "", 0.0),
                )
        elif r.kind == "payout":
            payout = paid.get(_payout_id(r.ref) or "")
            if r.amount > 0:
                item.type = "payout_refund"
            if payout is not None:
                item.payout_extra = f.PayoutExtra(
                    value=coins(payout.paid if payout.paid is not None else payout.amount),
                    address=payout.address,
                    tx_id=payout.txid or "",
                    paid_time=int(payout.sent_at or 0),
                    wallet_type="mainnet",
                    tip=coins(int(payout.amount) - int(payout.paid or payout.amount)),
                )
        out.append(item)
    return out


def _payout_id(ref: str | None) -> str | None:
    if not ref or not ref.startswith("payout:"):
        return None
    return ref.split(":")[1]


def _day(t: float) -> str:
    from hashquarry.accounting.aggregate import utc_day

    return utc_day(t)
