"""Payouts that never pay twice and never lose a payment.

1. In one transaction: the payout intent (a unique id), its items, and ledger
   entries debiting each balance.
2. The wallet pays with one `sendmany`, whose comment carries the intent id.
3. In one transaction: the intent is marked sent with the txid and the fee.

A crash after 1 leaves an intent without a txid. On start-up every such intent
is looked up in the wallet by its comment: found means it was paid (finish
step 3), not found means it never was (reverse the debits; the next run pays).
An explicit wallet refusal (insufficient funds, invalid address) reverses the
debits at once and keeps the node's reason; a lost connection decides nothing
until the wallet can be asked again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT, balances
from hashquarry.chain.rpc import NodeError, NodeRpc, RpcError
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

log = logging.getLogger(__name__)

COMMENT_PREFIX = "hashquarry:"
COIN = 100_000_000
WALLET_SCAN = 2_000  # recent wallet transactions searched when reconciling


class PayoutError(Exception):
    pass


class Target(Protocol):
    account: str
    address: str
    threshold: int
    paused: bool


@dataclass(frozen=True)
class PayoutTarget:
    account: str
    address: str
    threshold: int
    paused: bool = False


@dataclass(frozen=True)
class PayoutResult:
    payout_id: str
    status: str
    txid: str | None
    total: int
    items: dict[str, int]
    error: str | None = None


Fault = Callable[[str], None]
Targets = Callable[[], Awaitable[Sequence[Target]]]


def amount_string(sats: int) -> str:
    """Base units to the wallet's decimal string (exact, no float)."""
    return f"{sats // COIN}.{sats % COIN:08d}"


def to_sats(value: float | str | Decimal) -> int:
    return int((Decimal(str(value)) * COIN).to_integral_value())


def _no_fault(_point: str) -> None:
    pass


class PayoutEngine:
    def __init__(
        self,
        engine: AsyncEngine,
        rpc: NodeRpc,
        *,
        coin: str,
        targets: Targets,
        fee_policy: str = "pool",
        minconf: int = 1,
        confirmations_required: int = 1,
        fault: Fault | None = None,
    ) -> None:
        if fee_policy not in ("pool", "deducted"):
            raise ValueError("fee_policy must be 'pool' or 'deducted'")
        self.engine = engine
        self.rpc = rpc
        self.coin = coin
        self.targets = targets
        self.fee_policy = fee_policy
        self.minconf = minconf
        self.confirmations_required = confirmations_required
        self.fault = fault or _no_fault

    # -- choosing who is paid ---------------------------------------------------------

    async def due(self, now: float) -> dict[str, tuple[str, int]]:
        """account -> (address, amount) for every balance at or above its threshold."""
        targets = {t.account: t for t in await self.targets()}
        async with self.engine.connect() as conn:
            bals = await balances(conn, self.coin, now)
        out = {}
        for account, bal in bals.items():
            t = targets.get(account)
            if t is None or t.paused or account == POOL_ACCOUNT or bal.balance <= 0:
                continue
            if bal.balance >= max(t.threshold, 1):
                out[account] = (t.address, bal.balance)
        return out

    # -- the three steps ----------------------------------------------------------------

    async def run_once(self, now: float | None = None) -> PayoutResult | None:
        """Reconcile, then pay every due balance in one sendmany. None if nobody is due."""
        now = time.time() if now is None else now
        await self.reconcile()
        due = await self.due(now)
        if not due:
            return None
        return await self.pay(due, kind="auto", now=now)

    async def withdraw(self, accounts: Sequence[str], now: float | None = None) -> PayoutResult:
        """Pay these accounts their whole balance now, whatever their thresholds."""
        now = time.time() if now is None else now
        await self.reconcile()
        targets = {t.account: t for t in await self.targets()}
        async with self.engine.connect() as conn:
            bals = await balances(conn, self.coin, now)
        due: dict[str, tuple[str, int]] = {}
        for account in accounts:
            t = targets.get(account)
            if t is None:
                raise PayoutError(f"{account}: no wallet address for {self.coin}")
            if t.paused:
                raise PayoutError(f"{account}: payments are paused")
            bal = bals.get(account)
            if bal is None or bal.balance <= 0:
                raise PayoutError(f"{account}: nothing to withdraw")
            due[account] = (t.address, bal.balance)
        return await self.pay(due, kind="withdraw", now=now)

    async def pay(self, due: dict[str, tuple[str, int]], *, kind: str, now: float) -> PayoutResult:
        payout_id = uuid.uuid4().hex
        total = sum(a for _, a in due.values())
        async with self.engine.begin() as conn:
            # Balances may have moved since `due` was read: re-check inside the write.
            bals = await balances(conn, self.coin, now)
            for account, (_, amount) in due.items():
                if bals.get(account) is None or bals[account].balance < amount:
                    raise PayoutError(f"{account}: balance changed; try again")
            await conn.execute(
                payouts.insert().values(
                    id=payout_id,
                    coin=self.coin,
                    kind=kind,
                    status="intent",
                    created_at=now,
                    total=total,
                    tip=0,
                    fee_policy=self.fee_policy,
                    confirmations=0,
                )
            )
            await conn.execute(
                payout_items.insert(),
                [
                    {
                        "payout_id": payout_id,
                        "account": a,
                        "address": addr,
                        "amount": amt,
                        "paid": amt,
                    }
                    for a, (addr, amt) in due.items()
                ],
            )
            await conn.execute(
                m.ledger.insert(),
                [
                    _ledger(self.coin, a, -amt, f"payout:{payout_id}", now)
                    for a, (_, amt) in due.items()
                ],
            )
        self.fault("after_intent")

        amounts: dict[str, int] = {}
        for addr, amt in due.values():
            amounts[addr] = amounts.get(addr, 0) + amt
        subtract = list(amounts) if self.fee_policy == "deducted" else []
        try:
            txid = await self.rpc.call(
                "sendmany",
                "",
                {a: amount_string(v) for a, v in amounts.items()},
                self.minconf,
                COMMENT_PREFIX + payout_id,
                subtract,
                retries=0,
            )
        except RpcError as exc:
            await self._fail(payout_id, f"wallet refused: {exc.message} (code {exc.code})", now)
            return PayoutResult(payout_id, "failed", None, total, {}, exc.message)
        except NodeError as exc:
            log.warning(
                "payout %s: no answer from the wallet (%s); reconciling later", payout_id, exc
            )
            return PayoutResult(payout_id, "intent", None, total, {}, str(exc))
        self.fault("after_send")
        await self._mark_sent(payout_id, str(txid), now)
        self.fault("after_record")
        return PayoutResult(
            payout_id, "sent", str(txid), total, {a: amt for a, (_, amt) in due.items()}
        )

    async def _fail(self, payout_id: str, reason: str, now: float) -> None:
        async with self.engine.begin() as conn:
            await _reverse(conn, self.coin, payout_id, now)
            await conn.execute(
                update(payouts)
                .where(payouts.c.id == payout_id)
                .values(status="failed", error=reason[:512])
            )
        log.warning("payout %s failed: %s", payout_id, reason)

    async def _mark_sent(self, payout_id: str, txid: str, now: float) -> None:
        tx = await self.rpc.call("gettransaction", txid)
        tip = -to_sats(tx.get("fee", 0))
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(payouts.c.status).where(payouts.c.id == payout_id))
            ).one()
            if row.status != "intent":
                return
            await conn.execute(
                update(payouts)
                .where(payouts.c.id == payout_id)
                .values(status="sent", txid=txid, sent_at=now, tip=tip)
            )
            if self.fee_policy == "pool" and tip:
                await conn.execute(
                    m.ledger.insert(),
                    [
                        {
                            "coin": self.coin,
                            "account": POOL_ACCOUNT,
                            "kind": "fee",
                            "bucket": "balance",
                            "amount": -tip,
                            "block_id": None,
                            "ref": f"payout:{payout_id}:tip",
                            "created_at": now,
                            "mining_date": None,
                            "extra": {"txid": txid},
                        }
                    ],
                )
            elif self.fee_policy == "deducted":
                await self._record_received(conn, payout_id, tx)

    async def _record_received(self, conn: AsyncConnection, payout_id: str, tx: Any) -> None:
        sent: dict[str, int] = {}
        for d in tx.get("details", []):
            if d.get("category") == "send":
                sent[d["address"]] = sent.get(d["address"], 0) - to_sats(d["amount"])
        items = (
            (await conn.execute(select(payout_items).where(payout_items.c.payout_id == payout_id)))
            .mappings()
            .all()
        )
        by_address: dict[str, list[Any]] = {}
        for it in items:
            by_address.setdefault(it["address"], []).append(it)
        for address, rows in by_address.items():
            received = sent.get(address)
            if received is None:
                continue
            gross = sum(r["amount"] for r in rows)
            # Several accounts paid to one address share its fee pro rata.
            left = received
            for i, r in enumerate(rows):
                part = left if i == len(rows) - 1 else received * r["amount"] // gross
                left -= part
                await conn.execute(
                    update(payout_items)
                    .where(
                        payout_items.c.payout_id == payout_id,
                        payout_items.c.account == r["account"],
                    )
                    .values(paid=part)
                )

    # -- after a crash ------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Settle intents left by a crash. Returns how many were settled."""
        async with self.engine.connect() as conn:
            pending = (
                (
                    await conn.execute(
                        select(payouts.c.id).where(
                            payouts.c.coin == self.coin, payouts.c.status == "intent"
                        )
                    )
                )
                .scalars()
                .all()
            )
        if not pending:
            return 0
        txs = await self.rpc.call("listtransactions", "*", WALLET_SCAN, 0)
        by_comment = {
            t.get("comment"): t["txid"]
            for t in txs
            if str(t.get("comment", "")).startswith(COMMENT_PREFIX)
        }
        now = time.time()
        for payout_id in pending:
            txid = by_comment.get(COMMENT_PREFIX + payout_id)
            if txid is not None:
                log.info("payout %s was paid before a crash: %s", payout_id, txid)
                await self._mark_sent(payout_id, txid, now)
            else:
                await self._fail(payout_id, "not in the wallet after a restart; will retry", now)
        return len(pending)

    async def track(self) -> int:
        """Follow confirmations of sent payouts on the node."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(payouts.c.id, payouts.c.txid).where(
                        payouts.c.coin == self.coin, payouts.c.status == "sent"
                    )
                )
            ).all()
        changed = 0
        for payout_id, txid in rows:
            tx = await self.rpc.call("gettransaction", txid)
            conf = int(tx.get("confirmations", 0))
            status = "confirmed" if conf >= self.confirmations_required else "sent"
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(payouts)
                    .where(payouts.c.id == payout_id)
                    .values(confirmations=max(conf, 0), status=status)
                )
            changed += status == "confirmed"
        return changed


async def payout_entries(
    conn: AsyncConnection, coin: str, account: str, limit: int = 100
) -> list[dict[str, Any]]:
    """An account's payouts, newest first, with the f2pool payout fields."""
    q = (
        select(payout_items.c.amount, payout_items.c.paid, payout_items.c.address,
               payouts.c.txid, payouts.c.sent_at, payouts.c.tip, payouts.c.status,
               payouts.c.confirmations, payouts.c.id, payouts.c.kind)
        .join(payouts, payouts.c.id == payout_items.c.payout_id)
        .where(payouts.c.coin == coin, payout_items.c.account == account,
               payouts.c.status.in_(("sent", "confirmed")))
        .order_by(payouts.c.sent_at.desc()).limit(limit)
    )  # fmt: skip
    return [
        {"value": r.amount, "received": r.paid, "address": r.address, "tx_id": r.txid,
         "paid_time": r.sent_at, "tip": r.tip, "status": r.status,
         "confirmations": r.confirmations, "payout_id": r.id,
         "wallet_type": "manual" if r.kind == "withdraw" else "auto"}
        for r in (await conn.execute(q)).all()
    ]  # fmt: skip


def _ledger(coin: str, account: str, amount: int, ref: str, now: float) -> dict[str, Any]:
    return {
        "coin": coin,
        "account": account,
        "kind": "payout",
        "bucket": "balance",
        "amount": amount,
        "block_id": None,
        "ref": ref,
        "created_at": now,
        "mining_date": None,
        "extra": None,
    }


async def _reverse(conn: AsyncConnection, coin: str, payout_id: str, now: float) -> None:
    ref = f"payout:{payout_id}:reverse"
    done = await conn.scalar(select(m.ledger.c.id).where(m.ledger.c.ref == ref).limit(1))
    if done:
        return
    items = (
        await conn.execute(
            select(payout_items.c.account, payout_items.c.amount).where(
                payout_items.c.payout_id == payout_id
            )
        )
    ).all()
    if items:
        await conn.execute(m.ledger.insert(), [_ledger(coin, a, amt, ref, now) for a, amt in items])
