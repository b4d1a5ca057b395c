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
from hashquarry.payouts.engine import Fault, PayoutEngine, Target

log = logging.getLogger(__name__)

FAULT_ENV = "HASHQUARRY_PAYOUT_FAULT"


class InjectedFault(SystemExit):
    pass


def env_fault() -> Fault | None:
    """Test hook: `HASHQUARRY_PAYOUT_FAULT=after_intent|after_send|after_record` kills the
    process at that step (exit code 137, as kill -9 would), to prove crash safety."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return None

    def fault(point: str) -> None:
        if point == wanted:
            log.error("fault injected at %s", point)
            os._exit(137)

    return fault


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
        fault=env_fault(),
    )


async def payout_loop(
    engine: PayoutEngine, interval: float, before: Callable[[], Awaitable[object]] | None = None
) -> None:
    """Reconcile crash leftovers now; then every `interval`: settle what is due
    (`before`), follow confirmations, pay."""
    try:
        await engine.reconcile()
    except Exception:
        log.exception("payout reconciliation failed; will retry with the next run")
    while True:
        await asyncio.sleep(interval)
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
