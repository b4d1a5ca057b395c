"""Block lifecycle: processing -> unconfirmed -> confirmed | orphan | stale.

`next_state` is the pure rule; BlockTracker asks the node about every block not
yet final and applies it, crediting or reversing the ledger as blocks mature
or fall off the chain. It follows the node, so it survives restarts and reorgs.

Orphan and stale blocks are asked about again for RECHECK_SECONDS after they were
found: a reorg back (or `reconsiderblock`) can return one to the main chain, and it
is then credited again (immature) and matures like any other. Confirmed blocks are
final: their balance may already be paid out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import mature_block, recredit_block, reverse_block
from hashquarry.chain.rpc import NodeError, NodeRpc, RpcError
from hashquarry.store import models as m

log = logging.getLogger(__name__)

OPEN_STATES = ("processing", "unconfirmed")
OFF_CHAIN = ("orphan", "stale")
# A block the node has never heard of is given this long before it is called stale
# (the submit may still be in flight, or the node briefly away).
GRACE_SECONDS = 120.0
# Orphan/stale blocks are re-checked this long after they were found. Reorgs are a
# few blocks deep; a day is far past any that can bring one back.
RECHECK_SECONDS = 86_400.0


@dataclass(frozen=True)
class NodeView:
    """What the node says about one block hash."""

    known: bool
    confirmations: int  # -1 when known but not on the main chain


def next_state(
    status: str, view: NodeView, maturity: int, age: float, submit_result: str | None
) -> tuple[str, int]:
    """(new status, confirmations_left).

    On the main chain a block is unconfirmed, then confirmed at `maturity`
    confirmations, whatever it was before (an orphan can come back). Off it, a block
    that was on the chain is an orphan, one that never was is stale; a block the node
    does not know is given GRACE_SECONDS unless the node rejected it."""
    if status == "confirmed":
        return status, 0  # final: its balance may already be paid out
    if view.known and view.confirmations >= 1:
        if view.confirmations >= maturity:
            return "confirmed", 0
        return "unconfirmed", maturity - view.confirmations
    if status in OFF_CHAIN:
        return status, -1
    if view.known:  # on a side branch
        return ("orphan" if status == "unconfirmed" else "stale"), -1
    rejected = submit_result not in (None, "accepted", "inconclusive", "duplicate-inconclusive")
    if status == "processing" and (rejected or age > GRACE_SECONDS):
        return "stale", -1
    if status == "unconfirmed":
        return "orphan", -1  # it was on the chain and the node no longer has it
    return status, maturity


class BlockTracker:
    def __init__(
        self, engine: AsyncEngine, rpc: NodeRpc | None, *, coin: str, maturity: int
    ) -> None:
        self.engine = engine
        self.rpc = rpc
        self.coin = coin
        self.maturity = maturity

    async def _view(self, block_hash: str) -> NodeView | None:
        assert self.rpc is not None
        try:
            header = await self.rpc.call("getblockheader", block_hash, retries=0)
        except RpcError as exc:
            if exc.code == -5:  # block not found
                return NodeView(False, 0)
            raise
        except NodeError:
            return None  # node away: decide nothing
        return NodeView(True, int(header.get("confirmations", 0)))

    async def submitted(self, block_hash: str, result: str) -> bool:
        """Record the node's answer; False if the block is not in the store yet."""
        async with self.engine.begin() as conn:
            res = await conn.execute(
                update(m.blocks)
                .where(m.blocks.c.coin == self.coin, m.blocks.c.hash == block_hash)
                .values(submit_result=result[:128], updated_at=time.time())
            )
        if not res.rowcount:
            return False
        await self.update(only=block_hash)
        return True

    async def update(self, only: str | None = None) -> int:
        """Bring open blocks up to date; returns how many changed."""
        now = time.time()
        q = select(
            m.blocks.c.id,
            m.blocks.c.hash,
            m.blocks.c.status,
            m.blocks.c.found_at,
            m.blocks.c.submit_result,
            m.blocks.c.confirmations_left,
        ).where(
            m.blocks.c.coin == self.coin,
            m.blocks.c.status.in_(OPEN_STATES)
            | (m.blocks.c.status.in_(OFF_CHAIN) & (m.blocks.c.found_at >= now - RECHECK_SECONDS)),
        )
        if only is not None:
            q = q.where(m.blocks.c.hash == only)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        changed = 0
        for block_id, block_hash, status, found_at, submit_result, left in rows:
            view = await self._view(block_hash)
            if view is None:
                return changed
            new, new_left = next_state(status, view, self.maturity, now - found_at, submit_result)
            if (new, new_left) == (status, left):
                continue
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(m.blocks)
                    .where(m.blocks.c.id == block_id)
                    .values(
                        status=new,
                        confirmations_left=new_left,
                        confirmations=max(view.confirmations, 0),
                        updated_at=now,
                    )
                )
                if status in OFF_CHAIN and new not in OFF_CHAIN:
                    await recredit_block(conn, self.coin, block_id, now)
                if new == "confirmed":
                    await mature_block(conn, self.coin, block_id, now)
                elif new in OFF_CHAIN:
                    await reverse_block(conn, self.coin, block_id, now)
            if new != status:
                log.info("block %s: %s -> %s", block_hash, status, new)
            changed += 1
        return changed
