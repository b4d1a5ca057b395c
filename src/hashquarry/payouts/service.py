"""Composing the payout engine from the configuration, and its periodic loop."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounts.service import AccountsService
from hashquarry.chain.rpc import NodeRpc
from hashquarry.config import Settings
from hashquarry.distribution.reserve import DividendReserve
from hashquarry.payouts.engine import Fault, PayoutEngine, Target

log = logging.getLogger(__name__)

FAULT_ENV = "HASHQUARRY_PAYOUT_FAULT"


class InjectedFault(SystemExit):
    pass


def env_fault() -> Fault | None:
    """Test hook: `HASHQUARRY_PAYOUT_FAULT=POINT` kills the process at that step (exit code
    137, as kill -9 would), to prove crash safety. Points: after_intent, before_send,
    after_send, after_record (paying) and during_reconcile (after the first intent that
    reconcile settled)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return None

    def fault(point: str) -> None:
        if point == wanted:
            log.error("fault injected at %s", point)
            os._exit(137)

    return fault


def settle_after(settings: Settings) -> float:
    """How long a sendmany with no answer may still be running on the node.

    The node goes on with a call after the client gave up on it (a busy wallet's coin
    selection can take minutes), so an intent whose sendmany had no answer is judged
    "not paid" only this long after it was sent: ten RPC timeouts, at least ten
    minutes. `[payouts] settle_after` (seconds) overrides it.
    """
    if settings.payouts.settle_after is not None:
        return settings.payouts.settle_after
    return max(600.0, 10 * settings.node.rpc_timeout)


def build_engine(settings: Settings, store: AsyncEngine, rpc: NodeRpc) -> PayoutEngine:
    coin = settings.pool.coin
    cfg = settings.payouts

    accounts = AccountsService.from_settings(store, settings)

    async def targets() -> Sequence[Target]:
        # Mining users with wallets, and address-mode miners paying to themselves.
        return await accounts.payout_targets(coin, address_threshold=cfg.address_threshold)

    return PayoutEngine(
        store,
        rpc,
        coin=coin,
        targets=targets,
        fee_policy=cfg.fee_policy,
        minconf=cfg.minconf,
        confirmations_required=cfg.confirmations,
        settle_after=settle_after(settings),
        # Longer than one sendmany may take, so a withdrawal waits out a running payout.
        lock_timeout=max(60.0, 3 * settings.node.rpc_timeout),
        fault=env_fault(),
        # Distributors' income of days whose dividends are not settled yet stays put.
        reserve=DividendReserve(store, coin),
    )


async def payout_loop(
    engine: PayoutEngine, interval: float, before: Callable[[], Awaitable[object]] | None = None
) -> None:
    """Reconcile crash leftovers now; then every `interval`: settle what is due
    (`before`), follow confirmations, pay. Intents still waiting for the wallet's answer
    are looked at again after `settle_after` rather than a whole interval later."""
    try:
        await engine.reconcile()
    except Exception:
        log.exception("payout reconciliation failed; will retry with the next run")
    while True:
        wait = interval
        try:
            if await engine.pending():
                wait = min(interval, engine.settle_after + 1.0)
        except Exception:
            log.exception("payout store not readable; will retry")
        await asyncio.sleep(wait)
        try:
            if before is not None:
                # Settlements first, so dividends are taken before balances are paid.
                await before()
            await engine.track()
            result = await engine.run_once()
            if result is not None:
                log.info(
                    "payout %s: %s %s (%d base units)",
                    result.payout_id,
                    result.status,
                    result.txid or result.error,
                    result.total,
                )
        except Exception:
            log.exception("payout run failed; will retry")
