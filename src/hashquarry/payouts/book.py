"""The payout's rows in the store: the intent, its items and its ledger entries.

Every function here runs inside a transaction its caller opened, so an intent's state
and its money always move together. Ledger refs are the idempotency keys (the ledger
has a unique (ref, account, bucket)): `payout:<id>` debits, `payout:<id>:reverse`
gives back, `payout:<id>:redebit` debits again when a reversed payout turns out to have
been paid, `payout:<id>:tip` is the network fee the pool bore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

Due = Mapping[str, tuple[str, int]]  # account -> (address, amount)

PENDING = ("intent", "sending")  # the wallet's answer is not recorded yet
STATUSES = ("intent", "sending", "sent", "confirmed", "failed", "conflicted", "abandoned")
# What an operator must look at: money debited that may not have arrived, and intents
# whose wallet answer is still unknown (reconcile decides them, or they are stuck).
FLAGGED = ("conflicted", "abandoned", *PENDING)
# Shown to the account: whatever left its balance through the wallet, flagged or not.
SHOWN = ("sent", "confirmed", "conflicted", "abandoned")


def ledger_row(
    coin: str, account: str, amount: int, ref: str, now: float, kind: str = "payout"
) -> dict[str, Any]:
    return {
        "coin": coin,
        "account": account,
        "kind": kind,
        "bucket": "balance",
        "amount": amount,
        "block_id": None,
        "ref": ref,
        "created_at": now,
        "mining_date": None,
        "extra": None,
    }


async def write_intent(
    conn: AsyncConnection,
    coin: str,
    payout_id: str,
    *,
    kind: str,
    due: Due,
    fee_policy: str,
    now: float,
) -> None:
    """The intent, its items and the debits, before the wallet is asked."""
    await conn.execute(
        payouts.insert().values(
            id=payout_id,
            coin=coin,
            kind=kind,
            status="intent",
            created_at=now,
            total=sum(a for _, a in due.values()),
            tip=0,
            fee_policy=fee_policy,
            confirmations=0,
        )
    )
    await conn.execute(
        payout_items.insert(),
        [
            {"payout_id": payout_id, "account": a, "address": addr, "amount": amt, "paid": amt}
            for a, (addr, amt) in due.items()
        ],
    )
    await conn.execute(
        m.ledger.insert(),
        [ledger_row(coin, a, -amt, f"payout:{payout_id}", now) for a, (_, amt) in due.items()],
    )


async def set_status(
    conn: AsyncConnection, payout_id: str, expect: Sequence[str], **values: Any
) -> bool:
    """Compare-and-set: change the intent only if it is still in one of `expect`."""
    result = await conn.execute(
        update(payouts)
        .where(payouts.c.id == payout_id, payouts.c.status.in_(list(expect)))
        .values(**values)
    )
    return bool(result.rowcount)


async def items_of(conn: AsyncConnection, payout_id: str) -> list[Any]:
    q = select(payout_items.c.account, payout_items.c.amount, payout_items.c.address).where(
        payout_items.c.payout_id == payout_id
    )
    return list((await conn.execute(q)).all())


async def _has(conn: AsyncConnection, ref: str) -> bool:
    return bool(await conn.scalar(select(m.ledger.c.id).where(m.ledger.c.ref == ref).limit(1)))


async def reverse(conn: AsyncConnection, coin: str, payout_id: str, now: float) -> None:
    """Give the debited amounts back (once)."""
    ref = f"payout:{payout_id}:reverse"
    if await _has(conn, ref):
        return
    rows = [ledger_row(coin, a, amt, ref, now) for a, amt, _ in await items_of(conn, payout_id)]
    if rows:
        await conn.execute(m.ledger.insert(), rows)


async def redebit(conn: AsyncConnection, coin: str, payout_id: str, now: float) -> list[str]:
    """Debit a reversed payout again, because the wallet did pay it (once). The accounts."""
    ref = f"payout:{payout_id}:redebit"
    if not await _has(conn, f"payout:{payout_id}:reverse") or await _has(conn, ref):
        return []
    items = await items_of(conn, payout_id)
    await conn.execute(
        m.ledger.insert(), [ledger_row(coin, a, -amt, ref, now) for a, amt, _ in items]
    )
    return [a for a, _, _ in items]


async def record_tip(
    conn: AsyncConnection, coin: str, payout_id: str, txid: str, tip: int, now: float
) -> None:
    """Fee policy "pool": the pool account bears the network fee."""
    ref = f"payout:{payout_id}:tip"
    if tip <= 0 or await _has(conn, ref):
        return
    row = ledger_row(coin, POOL_ACCOUNT, -tip, ref, now, kind="fee")
    row["extra"] = {"txid": txid}
    await conn.execute(m.ledger.insert(), [row])


async def record_received(conn: AsyncConnection, payout_id: str, sent: Mapping[str, int]) -> None:
    """Fee policy "deducted": what each account's address really received."""
    by_address: dict[str, list[tuple[str, int]]] = {}
    for account, amount, address in await items_of(conn, payout_id):
        by_address.setdefault(address, []).append((account, amount))
    for address, rows in by_address.items():
        received = sent.get(address)
        if received is None:
            continue
        gross = sum(amount for _, amount in rows)
        # Several accounts paid to one address share its fee pro rata.
        left = received
        for i, (account, amount) in enumerate(rows):
            part = left if i == len(rows) - 1 else received * amount // gross
            left -= part
            await conn.execute(
                update(payout_items)
                .where(payout_items.c.payout_id == payout_id, payout_items.c.account == account)
                .values(paid=part)
            )


async def payout_entries(
    conn: AsyncConnection, coin: str, account: str, limit: int = 100
) -> list[dict[str, Any]]:
    """An account's payouts, newest first, with the f2pool payout fields. Conflicted and
    abandoned ones are listed with their status: their money left the balance."""
    q = (
        select(payout_items.c.amount, payout_items.c.paid, payout_items.c.address,
               payouts.c.txid, payouts.c.sent_at, payouts.c.tip, payouts.c.status,
               payouts.c.confirmations, payouts.c.id, payouts.c.kind)
        .join(payouts, payouts.c.id == payout_items.c.payout_id)
        .where(payouts.c.coin == coin, payout_items.c.account == account,
               payouts.c.status.in_(SHOWN))
        .order_by(payouts.c.sent_at.desc()).limit(limit)
    )  # fmt: skip
    return [
        {"value": r.amount, "received": r.paid, "address": r.address, "tx_id": r.txid,
         "paid_time": r.sent_at, "tip": r.tip, "status": r.status,
         "confirmations": r.confirmations, "payout_id": r.id,
         "wallet_type": "manual" if r.kind == "withdraw" else "auto"}
        for r in (await conn.execute(q)).all()
    ]  # fmt: skip


async def listing(
    conn: AsyncConnection, coin: str, statuses: Sequence[str] | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Payouts of the coin, newest first, for operators (`hashquarry payout list`): every
    status, or only `statuses`, with the accounts each one debited."""
    p = payouts.c
    q = select(payouts).where(p.coin == coin)
    if statuses is not None:
        q = q.where(p.status.in_(list(statuses)))
    rows = (await conn.execute(q.order_by(p.created_at.desc(), p.id).limit(limit))).all()
    items: dict[str, dict[str, int]] = {}
    if rows:
        i = payout_items.c
        found = await conn.execute(
            select(i.payout_id, i.account, i.amount)
            .where(i.payout_id.in_([r.id for r in rows]))
            .order_by(i.account)
        )
        for payout_id, account, amount in found.all():
            items.setdefault(payout_id, {})[account] = int(amount)
    return [
        {"id": r.id, "kind": r.kind, "status": r.status, "txid": r.txid, "total": int(r.total),
         "tip": int(r.tip), "fee_policy": r.fee_policy, "created_at": r.created_at,
         "sent_at": r.sent_at, "confirmations": int(r.confirmations), "error": r.error,
         "items": items.get(r.id, {})}
        for r in rows
    ]  # fmt: skip
