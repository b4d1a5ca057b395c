"""What every API dialect reads from: the store and the services around it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounts.service import AccountsService
from hashquarry.config import Settings
from hashquarry.distribution.service import DistributionService

if TYPE_CHECKING:
    from hashquarry.chain.rpc import NodeRpc
    from hashquarry.payouts.engine import PayoutEngine
    from hashquarry.pool import Pool


@dataclass
class ApiContext:
    settings: Settings
    engine: AsyncEngine
    accounts: AccountsService
    distribution: DistributionService
    payouts: PayoutEngine | None = None
    rpc: NodeRpc | None = None
    pool: Pool | None = None  # live figures (connections) when served next to the pool
    clock: Callable[[], float] = field(default=time.time)

    @property
    def coin(self) -> str:
        return self.settings.pool.coin

    @classmethod
    def for_pool(cls, pool: Pool) -> ApiContext:
        assert pool.accounting is not None and pool.accounts is not None
        engine = pool.accounting.engine
        return cls(
            settings=pool.settings,
            engine=engine,
            accounts=pool.accounts,
            distribution=DistributionService(engine, pool.accounts),
            payouts=pool.payouts,
            rpc=pool.rpc,
            pool=pool,
        )
