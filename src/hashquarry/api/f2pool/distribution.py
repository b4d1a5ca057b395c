"""Hashrate and revenue distribution: /v2/hash_rate/distribution/*, /v2/hash_rate/distribute,
/v2/revenue/distribution/*. Both users of a distribution must be the key owner's mining
users (`DistributionService` checks through the accounts service). Scope:
manage_distributions.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends

from hashquarry.accounts.keys import Scope
from hashquarry.api.context import ApiContext
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool.access import Caller, check_currency, coins, requires
from hashquarry.api.f2pool.errors import invalid
from hashquarry.distribution.models import HashrateOrder, RevenueShare

DAY = 86_400


def order_out(o: HashrateOrder) -> f.HashRateDistributionOrder:
    return f.HashRateDistributionOrder(
        id=o.id,
        start_date=int(o.start_at),
        end_date=int(o.end_at),
        distributor=o.distributor,
        recipient=o.recipient,
        hash_rate=o.hash_rate,
        terminate_at=int(o.terminate_at) if o.terminate_at is not None else 0,
    )


def share_out(s: RevenueShare) -> f.RevenueDistribution:
    return f.RevenueDistribution(
        id=str(s.id),
        currency=s.coin,
        distributor=s.distributor,
        recipient=s.recipient,
        description=s.description,
        proportion=s.proportion,
    )


def register(r: APIRouter, ctx: ApiContext) -> None:
    manage = Depends(requires(ctx, Scope.MANAGE_DISTRIBUTIONS))

    @r.post(
        "/hash_rate/distribution/info",
        summary="Hashrate distribution information",
        description="The distributor's hashrate now (10 minutes), the most already sold at "
        "one instant of [start_date, end_date), and what is left to sell there. Optional, "
        "as protobuf fields are: start_date (absent or 0: now), end_date (absent or 0: one "
        "day after start_date), hash_rate (0: none in particular; never negative).",
    )
    async def info(body: f.DistInfoReq, caller: Caller = manage) -> f.DistInfoResp:
        check_currency(ctx, body.currency)
        if body.hash_rate < 0:
            raise invalid("hash_rate", f"{body.hash_rate} is negative")
        start = body.start_date or int(ctx.clock())
        end = body.end_date or start + DAY
        # The service only checks hash_rate (the figures do not depend on it) and wants a
        # positive one; 0, "no amount in mind", passes as the smallest positive double.
        wanted = body.hash_rate or math.ulp(0.0)
        found = await ctx.distribution.hashrate_info(
            caller.owner, body.currency, body.distributor, wanted, start, end,
            body.recipient or None,
        )  # fmt: skip
        return f.DistInfoResp(
            current_hash_rate=found.current_hash_rate,
            sold_hash_rate=found.sold_hash_rate,
            remaining_hash_rate=found.remaining_hash_rate,
        )

    @r.post("/hash_rate/distribution/orders", summary="List of all orders of hashrate distribution")
    async def orders(body: f.DistributorReq, caller: Caller = manage) -> f.OrdersResp:
        check_currency(ctx, body.currency)
        found = await ctx.distribution.orders(caller.owner, body.currency, body.distributor)
        return f.OrdersResp(orders=[order_out(o) for o in found])

    @r.post(
        "/hash_rate/distribution/settlements",
        summary="List of all settlements of hashrate distribution",
    )
    async def settlements(body: f.DistributorReq, caller: Caller = manage) -> f.SettlementsResp:
        check_currency(ctx, body.currency)
        found = await ctx.distribution.settlements(caller.owner, body.currency, body.distributor)
        return f.SettlementsResp(
            settlements=[
                f.HashRateDistributionSettlement(
                    id=s.id,
                    order=order_out(s.order),
                    hashes=s.hashes,
                    income=coins(s.income),
                    timestamp=int(s.settled_at),
                )
                for s in found
            ]
        )

    @r.post(
        "/hash_rate/distribute",
        summary="Distribute hashrate to an f2pool account",
        description="Refused (conflict) if, at any instant of the window, the orders already "
        "made plus this one would exceed the distributor's hashrate now. start_date may be "
        "at most 300 s in the past.",
    )
    async def distribute(body: f.DistributeReq, caller: Caller = manage) -> f.DistributeResp:
        check_currency(ctx, body.currency)
        order = await ctx.distribution.distribute(
            caller.owner, body.currency, body.distributor, body.recipient,
            body.hash_rate, body.start_date, body.end_date,
        )  # fmt: skip
        return f.DistributeResp(order=order_out(order))

    @r.post("/hash_rate/distribution/terminate", summary="Terminate hashrate distribution order")
    async def terminate(body: f.TerminateReq, caller: Caller = manage) -> f.ReasonResp:
        order = await ctx.distribution.terminate(caller.owner, body.order_id)
        at = int(order.terminate_at or 0)
        return f.ReasonResp(reason=f"order {order.id} terminated at {at}")

    @r.post("/revenue/distribution/info", summary="Get revenue distribution information")
    async def revenue_info(body: f.RevenueInfoReq, caller: Caller = manage) -> f.RevenueInfoResp:
        check_currency(ctx, body.currency)
        found = await ctx.distribution.revenue_info(
            caller.owner, body.currency, body.distributor, body.recipient or None
        )
        return f.RevenueInfoResp(data=[share_out(s) for s in found])

    @r.post(
        "/revenue/distribution/add",
        summary="Distribute revenue to an f2pool account",
        description="proportion: 0 < p <= 1 with at most 6 decimals; a distributor's "
        "proportions never sum above 1.",
    )
    async def revenue_add(body: f.RevenueAddReq, caller: Caller = manage) -> f.RevenueDistribution:
        check_currency(ctx, body.currency)
        share = await ctx.distribution.revenue_add(
            caller.owner, body.currency, body.distributor, body.recipient,
            body.proportion, body.description,
        )  # fmt: skip
        return share_out(share)

    @r.post("/revenue/distribution/delete", summary="Terminate revenue distribution record")
    async def revenue_delete(body: f.RevenueDeleteReq, caller: Caller = manage) -> f.ReasonResp:
        share = await ctx.distribution.revenue_delete(caller.owner, body.distributor, body.id)
        return f.ReasonResp(reason=f"revenue distribution {share.id} deleted")
