"""The wallet's side of payouts: settling intents left behind and following sent ones.

An intent left behind is settled by reconcile, by searching the wallet for its
comment (paging back to the intent's time): found means paid (finish step 3). Not
found decides by state: "intent" means the wallet was never asked, so the debits are
reversed; "sending" means a sendmany may have reached the node, which may still be
working on it after the client gave up, so the intent is reversed only once it is
older than `settle_after`. An intent reversed that way is still looked for in the
wallet for a day: if the node finished its sendmany even later, the amounts are
debited again and the event is logged as an error. A txid is never dropped.

Tracking follows each sent payout's transaction on the node until it is confirmed,
flagging (never reversing) one that is conflicted or abandoned.

The steps and the lock these run under are in engine.py; the caller holds the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hashquarry.chain.rpc import RpcError
from hashquarry.payouts import book
from hashquarry.payouts.tables import payouts
from hashquarry.payouts.wallet import CLOCK_MARGIN, find_payments, tx_state

if TYPE_CHECKING:
    from hashquarry.payouts.engine import PayoutEngine

# Records keep the logger name they had when this lived in engine.py; logs show it.
log = logging.getLogger("hashquarry.payouts.engine")

UNSEEN = "not in the wallet"  # starts the reason of an intent judged unpaid by waiting
RECHECK = 86_400.0  # how long such an intent is still looked for in the wallet


async def find_in_wallet(payer: PayoutEngine, payout_ids: Sequence[str]) -> dict[str, list[str]]:
    """payout id -> txids of the wallet transactions carrying its comment."""
    async with payer.engine.connect() as conn:
        q = select(payouts.c.created_at).where(payouts.c.id.in_(list(payout_ids)))
        times = [float(t) for t in (await conn.execute(q)).scalars()]
    since = min(times, default=payer.clock()) - CLOCK_MARGIN
    return await find_payments(payer.rpc, payout_ids, since, payer.wallet_page)


async def reconcile_intents(payer: PayoutEngine, now: float) -> int:
    """Settle the intents left behind; returns how many were settled."""
    clock = payer.clock()
    async with payer.engine.connect() as conn:
        q = select(payouts.c.id, payouts.c.status, payouts.c.sent_at, payouts.c.created_at)
        rows = (
            await conn.execute(
                q.where(payouts.c.coin == payer.coin, payouts.c.status.in_(book.PENDING))
            )
        ).all()
        # Intents judged unpaid because the wallet did not show them in time: should
        # the node have finished their sendmany later still, they are found here and
        # debited again, instead of the txid being lost.
        judged = (
            await conn.execute(
                q.where(
                    payouts.c.coin == payer.coin,
                    payouts.c.status == "failed",
                    payouts.c.error.like(UNSEEN + "%"),
                    payouts.c.sent_at >= clock - RECHECK,
                )
            )
        ).all()
    if not rows and not judged:
        return 0
    # Any node error propagates: an incomplete search decides nothing.
    found = await find_in_wallet(payer, [r.id for r in (*rows, *judged)])
    settled = 0
    for r in judged:
        if r.id in found:
            await payer._mark_sent(r.id, found[r.id][0], now)  # re-debits, loudly
            settled += 1
    for r in rows:
        txids = found.get(r.id)
        if txids:
            if len(txids) > 1:
                log.error("payout %s PAID %d TIMES: %s", r.id, len(txids), txids)
            log.info("payout %s was paid: %s", r.id, txids[0])
            await payer._mark_sent(r.id, txids[0], now)
            for extra in txids[1:]:
                await payer._mark_sent(r.id, extra, now)  # flags the duplicate
        elif r.status == "intent":
            await payer._fail(r.id, "stopped before the wallet was asked; will retry", now)
        elif clock - float(r.sent_at or r.created_at) >= payer.settle_after:
            await payer._fail(
                r.id, f"{UNSEEN} {payer.settle_after:.0f} s after sendmany; will retry", now
            )
        else:
            log.info("payout %s: not in the wallet yet; deciding later", r.id)
            continue
        settled += 1
        await payer._fault("during_reconcile")
    return settled


async def track_sent(payer: PayoutEngine) -> int:
    """Follow sent payouts on the node; returns how many became confirmed."""
    async with payer.engine.connect() as conn:
        q = select(payouts.c.id, payouts.c.txid, payouts.c.status).where(
            payouts.c.coin == payer.coin,
            payouts.c.status.in_(("sent", "conflicted", "abandoned")),
        )
        rows = (await conn.execute(q)).all()
    confirmed = 0
    for payout_id, txid, old in rows:
        try:
            tx: dict[str, Any] = await payer.rpc.call("gettransaction", txid)
        except RpcError as exc:
            # The node answers but its wallet lost the transaction: the operator's.
            log.error("payout %s: transaction %s not in the wallet: %s", payout_id, txid, exc)
            async with payer.engine.begin() as conn:
                await book.set_status(conn, payout_id, [old], error=exc.message[:512])
            continue
        status, conf = tx_state(tx, payer.confirmations_required)
        values: dict[str, Any] = {"status": status, "confirmations": max(conf, 0)}
        if status in ("conflicted", "abandoned"):
            # Not reversed: a conflicted transaction can confirm after a reorg and an
            # abandoned one can still be mined; the debits stay, flagged, until the
            # operator decides (tracking goes on meanwhile).
            values["error"] = (
                f"{status} on the node ({conf} confirmations, conflicts "
                f"{tx.get('walletconflicts', [])}); the money is debited and may not have "
                "arrived: check and settle by hand"
            )[:512]
            log.error("payout %s (%s) is %s: %s", payout_id, txid, status, values["error"])
        elif old in ("conflicted", "abandoned"):
            values["error"] = None  # the flag goes with the cause; the log keeps it
            log.warning("payout %s (%s) was %s, is %s again", payout_id, txid, old, status)
        async with payer.engine.begin() as conn:
            await book.set_status(conn, payout_id, [old], **values)
        confirmed += status == "confirmed"
    return confirmed
