"""Payouts that never pay twice and never lose a payment.

1. In one transaction: the payout intent (a unique id, status "intent"), its items,
   and ledger entries debiting each balance.
2. The intent becomes "sending" (compare-and-set), then the wallet pays with one
   `sendmany` whose comment carries the intent id.
3. In one transaction: the intent is marked "sent" with the txid and the fee.

Every payout operation (pay, withdraw, reconcile, track) holds one lock per store and
coin, in this process and across processes (lock.py), so a reconcile can never judge
an intent a live payer is still working on, and two payers never debit one balance.

A node that refused a sendmany for sure (insufficient funds, bad address) reverses the
intent at once; any other node error looks for its comment in the wallet first. An
intent left behind is settled by reconcile, and sent payouts are followed on the node by
track: both in reconcile.py.

What is paid is the payable part of a balance: the balance less what a `Reserve` holds
back (the income of distribution days whose dividends are not settled yet, see
distribution/holds.py). Under the lock, each payout first lets the reserve settle what
it can, then reads the holds, and re-checks them in the transaction that debits.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT, balances
from hashquarry.chain.rpc import NodeError, NodeRpc, RpcError
from hashquarry.payouts import book
from hashquarry.payouts.book import payout_entries
from hashquarry.payouts.lock import LockTimeout, payout_lock
from hashquarry.payouts.models import (
    PayoutBusy,
    PayoutError,
    PayoutResult,
    PayoutTarget,
    Reserve,
    Target,
)
from hashquarry.payouts.reconcile import find_in_wallet, reconcile_intents, track_sent
from hashquarry.payouts.tables import payouts
from hashquarry.payouts.wallet import (
    COIN,
    COMMENT_PREFIX,
    PAGE,
    amount_string,
    comment_for,
    node_answered,
    refused_before_creating,
    sent_by_address,
    to_sats,
)

__all__ = [
    "COIN",
    "COMMENT_PREFIX",
    "PayoutBusy",
    "PayoutEngine",
    "PayoutError",
    "PayoutResult",
    "PayoutTarget",
    "Reserve",
    "Target",
    "amount_string",
    "payout_entries",
    "to_sats",
]

log = logging.getLogger(__name__)


Fault = Callable[[str], Awaitable[None] | None]
Targets = Callable[[], Awaitable[Sequence[Target]]]
Due = dict[str, tuple[str, int]]


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
        settle_after: float = 600.0,
        lock_timeout: float = 60.0,
        wallet_page: int = PAGE,
        clock: Callable[[], float] = time.time,
        fault: Fault | None = None,
        reserve: Reserve | None = None,
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
        self.settle_after = settle_after
        self.lock_timeout = lock_timeout
        self.wallet_page = wallet_page
        self.clock = clock
        self.fault = fault
        self.reserve = reserve
        # The API and the payout loop share this object: they queue here first, fairly,
        # and only then contend for the store's lock with other engines and processes.
        self._local = asyncio.Lock()
        self._store_lock = payout_lock(engine, coin, lock_timeout)

    async def _fault(self, point: str) -> None:
        if self.fault is not None:
            result = self.fault(point)
            if inspect.isawaitable(result):
                await result

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """The payout lock of this store and coin; PayoutBusy if not free in time."""
        try:
            await asyncio.wait_for(self._local.acquire(), self.lock_timeout)
        except TimeoutError:
            raise PayoutBusy("another payout is in progress; try again") from None
        try:
            try:
                async with self._store_lock.hold():
                    yield
            except LockTimeout:
                raise PayoutBusy("another payout is in progress; try again") from None
        finally:
            self._local.release()

    # -- choosing who is paid ---------------------------------------------------------

    async def payable(self, conn: AsyncConnection, now: float) -> dict[str, tuple[int, int]]:
        """account -> (payable, held back): its balance less what the reserve holds back
        for others, never below 0. On the caller's connection (and transaction)."""
        bals = await balances(conn, self.coin, now)
        held: Mapping[str, int] = {}
        if self.reserve is not None:
            held = await self.reserve.held(conn, now)
        out = {}
        for account, bal in bals.items():
            keep = held.get(account, 0)
            out[account] = (max(0, bal.balance - keep), keep)
        return out

    async def due(self, now: float) -> Due:
        """account -> (address, amount) for every payable balance at or above its threshold."""
        targets = {t.account: t for t in await self.targets()}
        async with self.engine.connect() as conn:
            payable = await self.payable(conn, now)
        out = {}
        for account, (amount, _) in payable.items():
            t = targets.get(account)
            if t is None or t.paused or account == POOL_ACCOUNT or amount <= 0:
                continue
            if amount >= max(t.threshold, 1):
                out[account] = (t.address, amount)
        return out

    async def _settle_reserve(self, now: float) -> None:
        """Let the reserve settle what it can first (the caller holds the lock), so only
        what is really still owed is held back."""
        if self.reserve is not None:
            await self.reserve.settle(now)

    # -- the operations (each holds the lock) -----------------------------------------

    async def run_once(self, now: float | None = None) -> PayoutResult | None:
        """Reconcile, then pay every due balance in one sendmany. None if nobody is due."""
        now = time.time() if now is None else now
        async with self.exclusive():
            await reconcile_intents(self, now)
            await self._settle_reserve(now)
            due = await self.due(now)
            if not due:
                return None
            return await self._pay(due, kind="auto", now=now)

    async def withdraw(self, accounts: Sequence[str], now: float | None = None) -> PayoutResult:
        """Pay these accounts their whole payable balance now, whatever their thresholds."""
        now = time.time() if now is None else now
        async with self.exclusive():
            await reconcile_intents(self, now)
            await self._settle_reserve(now)
            targets = {t.account: t for t in await self.targets()}
            async with self.engine.connect() as conn:
                payable = await self.payable(conn, now)
            due: Due = {}
            for account in accounts:
                t = targets.get(account)
                if t is None:
                    raise PayoutError(f"{account}: no wallet address for {self.coin}")
                if t.paused:
                    raise PayoutError(f"{account}: payments are paused")
                amount, held = payable.get(account, (0, 0))
                if amount <= 0 and held:
                    raise PayoutError(
                        f"{account}: nothing to withdraw yet: {held} base units of its balance "
                        "are held back until the dividends of its distributions are settled"
                    )
                if amount <= 0:
                    raise PayoutError(f"{account}: nothing to withdraw")
                due[account] = (t.address, amount)
            return await self._pay(due, kind="withdraw", now=now)

    async def pay(self, due: Due, *, kind: str, now: float) -> PayoutResult:
        async with self.exclusive():
            return await self._pay(due, kind=kind, now=now)

    async def reconcile(self, now: float | None = None) -> int:
        """Settle intents left behind. Returns how many were settled."""
        async with self.exclusive():
            return await reconcile_intents(self, time.time() if now is None else now)

    async def track(self) -> int:
        """Follow sent payouts on the node. Returns how many became confirmed."""
        async with self.exclusive():
            return await track_sent(self)

    async def pending(self) -> int:
        """Intents whose wallet answer is not recorded yet (no lock: a read)."""
        async with self.engine.connect() as conn:
            q = select(payouts.c.id).where(
                payouts.c.coin == self.coin, payouts.c.status.in_(book.PENDING)
            )
            return len((await conn.execute(q)).all())

    # -- paying -------------------------------------------------------------------------

    async def _pay(self, due: Due, *, kind: str, now: float) -> PayoutResult:
        payout_id = uuid.uuid4().hex
        total = sum(a for _, a in due.values())
        # A node that is down fails here, before anything is written.
        await self.rpc.call("getwalletinfo")
        async with self.engine.begin() as conn:
            # Balances and holds may have moved since `due` was read: re-check inside
            # the write (an order or revenue distribution may have been added meanwhile).
            payable = await self.payable(conn, now)
            for account, (_, amount) in due.items():
                if payable.get(account, (0, 0))[0] < amount:
                    raise PayoutError(f"{account}: balance changed; try again")
            await book.write_intent(
                conn, self.coin, payout_id, kind=kind, due=due, fee_policy=self.fee_policy,
                now=now,
            )  # fmt: skip
        await self._fault("after_intent")

        async with self.engine.begin() as conn:
            # From here on the wallet may have been asked. Compare-and-set: an intent
            # decided meanwhile (only if this payer lost its lock) is not sent.
            if not await book.set_status(
                conn, payout_id, ["intent"], status="sending", sent_at=self.clock()
            ):
                return PayoutResult(payout_id, "failed", None, total, {}, "decided elsewhere")
        await self._fault("before_send")

        amounts: dict[str, int] = {}
        for addr, amt in due.values():
            amounts[addr] = amounts.get(addr, 0) + amt
        subtract = list(amounts) if self.fee_policy == "deducted" else []
        try:
            txid = str(
                await self.rpc.call(
                    "sendmany",
                    "",
                    {a: amount_string(v) for a, v in amounts.items()},
                    self.minconf,
                    comment_for(payout_id),
                    subtract,
                    retries=0,  # a retried sendmany could pay twice
                )
            )
        except NodeError as exc:
            return await self._after_send_error(payout_id, total, exc, now)
        await self._fault("after_send")
        try:
            await self._mark_sent(payout_id, txid, now)
        except NodeError as exc:
            # Paid, but the fee could not be read: the comment finds it again later.
            log.error("payout %s: paid in %s, recorded later (%s)", payout_id, txid, exc)
            return PayoutResult(
                payout_id,
                "sending",
                txid,
                total,
                {},
                "paid; the record is completed by the next reconcile",
            )
        await self._fault("after_record")
        items = {a: amt for a, (_, amt) in due.items()}
        return PayoutResult(payout_id, "sent", txid, total, items)

    async def _after_send_error(
        self, payout_id: str, total: int, exc: NodeError, now: float
    ) -> PayoutResult:
        # What callers (API clients too) are told: the wallet's own reason, never the
        # node's address or credentials, which are in the log.
        reason = exc.message if isinstance(exc, RpcError) else "the coin node did not answer"
        if refused_before_creating(exc):
            await self._fail(payout_id, f"wallet refused: {exc}", now)
            return PayoutResult(payout_id, "failed", None, total, {}, reason)
        # Ambiguous: the wallet may have paid. Its comment says.
        log.warning(
            "payout %s: sendmany failed ambiguously (%s); asking the wallet", payout_id, exc
        )
        try:
            found = await find_in_wallet(self, [payout_id])
        except NodeError as lookup:
            log.warning(
                "payout %s: wallet not searchable (%s); reconciling later", payout_id, lookup
            )
            return PayoutResult(payout_id, "sending", None, total, {}, reason)
        if payout_id in found:
            txid = found[payout_id][0]
            try:
                await self._mark_sent(payout_id, txid, now)
            except NodeError:
                return PayoutResult(payout_id, "sending", txid, total, {}, reason)
            return PayoutResult(payout_id, "sent", txid, total, await self._items(payout_id))
        if node_answered(exc):
            # The node finished the call with an error and the wallet has no such
            # transaction: it was never made.
            await self._fail(payout_id, f"wallet refused: {exc}", now)
            return PayoutResult(payout_id, "failed", None, total, {}, reason)
        return PayoutResult(payout_id, "sending", None, total, {}, reason)

    async def _items(self, payout_id: str) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return {a: amt for a, amt, _ in await book.items_of(conn, payout_id)}

    async def _fail(self, payout_id: str, reason: str, now: float) -> bool:
        async with self.engine.begin() as conn:
            done = await book.set_status(
                conn, payout_id, book.PENDING, status="failed", error=reason[:512]
            )
            if done:
                await book.reverse(conn, self.coin, payout_id, now)
        if done:
            log.warning("payout %s failed, balances restored: %s", payout_id, reason)
        return done

    async def _mark_sent(self, payout_id: str, txid: str, now: float) -> None:
        tx = await self.rpc.call("gettransaction", txid)
        tip = -to_sats(tx.get("fee", 0))
        async with self.engine.begin() as conn:
            q = select(payouts.c.status, payouts.c.txid, payouts.c.fee_policy).where(
                payouts.c.id == payout_id
            )
            row = (await conn.execute(q.with_for_update())).one()
            if row.status not in (*book.PENDING, "failed"):
                if row.txid != txid:
                    log.error(
                        "payout %s PAID TWICE: wallet transactions %s and %s carry its id",
                        payout_id, row.txid, txid,
                    )  # fmt: skip
                    await book.set_status(
                        conn, payout_id, [row.status], error=f"also paid in {txid}"[:512]
                    )
                return
            note = None
            if row.status == "failed":
                accounts = await book.redebit(conn, self.coin, payout_id, now)
                note = "paid by the wallet after it had been reversed; debited again"
                log.error(
                    "payout %s was reversed but the wallet paid it in %s: debited %s again",
                    payout_id, txid, ", ".join(accounts),
                )  # fmt: skip
            await book.set_status(
                conn, payout_id, [row.status], status="sent", txid=txid, sent_at=now, tip=tip,
                error=note,
            )  # fmt: skip
            # The intent says how its transaction was built, whatever this process's policy.
            if row.fee_policy == "pool":
                await book.record_tip(conn, self.coin, payout_id, txid, tip, now)
            else:
                await book.record_received(conn, payout_id, sent_by_address(tx))
