"""Tools for payout tests against the real regtest wallet.

`audit` is the exactly-once check: it compares the store with the wallet, not the
store with itself. `RpcProxy` sits between the pool and the node and breaks the
transport (drops a connection after the node has answered, delays a call, refuses
everything), so faults the node cannot be asked to make are still real: the wallet
behind it is the real one and really pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT, balances
from hashquarry.chain.regtest import RegtestNode
from hashquarry.chain.rpc import NodeRpc
from hashquarry.payouts.engine import PayoutEngine, PayoutTarget
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

COIN = 100_000_000


def sats(value: Any) -> int:
    return int((Decimal(str(value)) * COIN).to_integral_value())


async def seed(store: AsyncEngine, amounts: Mapping[str, int], tag: str = "seed") -> None:
    """Balances as accounting would have credited them."""
    async with store.begin() as conn:
        await conn.execute(m.ledger.insert(), [
            {"coin": "bitcoin", "account": a, "kind": "revenue", "bucket": "balance",
             "amount": v, "ref": f"{tag}:{a}", "created_at": time.time()}
            for a, v in amounts.items()])  # fmt: skip


def make_payer(
    store: AsyncEngine, url: str, node: RegtestNode, targets: Sequence[PayoutTarget], **kw: Any
) -> tuple[PayoutEngine, NodeRpc]:
    rpc = NodeRpc(url, node.user, node.password, timeout=kw.pop("timeout", 10.0), retries=0)

    async def get_targets() -> Sequence[PayoutTarget]:
        return targets

    return PayoutEngine(store, rpc, coin="bitcoin", targets=get_targets, **kw), rpc


async def current_balances(store: AsyncEngine) -> dict[str, int]:
    async with store.connect() as conn:
        return {a: b.balance for a, b in (await balances(conn, "bitcoin", time.time())).items()}


def wallet_comments(node: RegtestNode) -> dict[str, set[str]]:
    """Every hashquarry comment in the whole wallet -> the txids that carry it."""
    out: dict[str, set[str]] = {}
    skip = 0
    while True:
        page = node.call("listtransactions", "*", 1000, skip)
        for t in page:
            c = str(t.get("comment", ""))
            if c.startswith("hashquarry:"):
                out.setdefault(c.removeprefix("hashquarry:"), set()).add(t["txid"])
        if len(page) < 1000:
            return out
        skip += 1000


def wallet_sent(node: RegtestNode, txid: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in node.call("gettransaction", txid)["details"]:
        if d["category"] == "send":
            out[d["address"]] = out.get(d["address"], 0) - sats(d["amount"])
    return out


@dataclass
class Audit:
    paid_to: dict[str, int] = field(default_factory=dict)  # address -> wallet amounts
    sent: int = 0
    failed: int = 0


async def audit(store: AsyncEngine, node: RegtestNode, *, settled: bool = True) -> Audit:
    """The store against the wallet, payout by payout.

    - No payout id appears in two wallet transactions, and a paid payout's id is in the
      wallet with exactly its txid (the node may be shared with other stores' tests).
    - A paid payout's net ledger debits (debit, reversal, re-debit) per address equal what
      the wallet's transaction sent to that address (pool policy), or exceed it by the
      address's share of the fee (deducted policy); the fees add up to the tx fee.
    - A failed payout's net ledger effect is zero and the wallet has no transaction for it.
    - With `settled`, no intent is left pending.
    """
    comments = wallet_comments(node)
    dup = {c: t for c, t in comments.items() if len(t) > 1}
    assert not dup, f"payout ids in two wallet transactions: {dup}"
    async with store.connect() as conn:
        rows = (await conn.execute(select(payouts))).mappings().all()
        items = (await conn.execute(select(payout_items))).mappings().all()
        ledger = (
            await conn.execute(select(m.ledger).where(m.ledger.c.ref.like("payout:%")))
        ).mappings().all()  # fmt: skip
    for r in rows:
        if r["id"] in comments and r["status"] not in ("intent", "sending"):
            assert comments[r["id"]] == {r["txid"]}, (dict(r), comments[r["id"]])
    out = Audit()
    for r in rows:
        pid = r["id"]
        net: dict[str, int] = {}  # account -> net debit
        tip = 0
        for e in ledger:
            if e["ref"] == f"payout:{pid}:tip":
                assert e["account"] == POOL_ACCOUNT and e["kind"] == "fee"
                tip -= e["amount"]
            elif e["ref"] == f"payout:{pid}" or e["ref"].startswith(f"payout:{pid}:"):
                net[e["account"]] = net.get(e["account"], 0) - e["amount"]
        mine = [i for i in items if i["payout_id"] == pid]
        if settled:
            assert r["status"] not in ("intent", "sending"), dict(r)
        if r["status"] == "failed":
            assert r["txid"] is None and pid not in comments, dict(r)
            assert all(v == 0 for v in net.values()), (pid, net)
            out.failed += 1
            continue
        if r["txid"] is None:
            continue  # pending, and allowed to be
        out.sent += 1
        assert pid in comments, f"{pid} has txid {r['txid']} but no wallet tx names it"
        debit_by_address: dict[str, int] = {}
        for i in mine:
            assert net.get(i["account"], 0) == i["amount"], (pid, i, net)
            debit_by_address[i["address"]] = debit_by_address.get(i["address"], 0) + i["amount"]
        sent = wallet_sent(node, r["txid"])
        fee = -sats(node.call("gettransaction", r["txid"])["fee"])
        assert set(sent) == set(debit_by_address), (pid, sent, debit_by_address)
        if r["fee_policy"] == "pool":
            assert sent == debit_by_address, (pid, sent, debit_by_address)
            assert r["tip"] == tip == fee, (pid, r["tip"], tip, fee)
        else:
            assert tip == 0 and r["tip"] == fee
            assert sum(debit_by_address.values()) - sum(sent.values()) == fee
            received: dict[str, int] = {}
            for i in mine:
                received[i["address"]] = received.get(i["address"], 0) + i["paid"]
            assert received == sent, (pid, received, sent)
        for address, amount in sent.items():
            out.paid_to[address] = out.paid_to.get(address, 0) + amount
    return out


def received(node: RegtestNode, address: str) -> int:
    return sats(node.call("getreceivedbyaddress", address, 0))


# -- a transport between the engine and the node that can fail on purpose -------------

Rule = Callable[[str], Awaitable[str]]  # method -> "forward" | "drop" | "drop_after"


class RpcProxy:
    """An HTTP JSON-RPC relay to the node. `rule(method)` decides per call: "forward",
    "drop" (close the connection without passing the call on: the node never sees it)
    or "drop_after" (pass it on, let the node finish it, then close the connection
    without an answer: the client cannot tell whether it happened)."""

    def __init__(self, node: RegtestNode) -> None:
        self.node = node
        self.rule: Rule | None = None
        self.seen: list[str] = []
        self._server: asyncio.Server | None = None
        self._client = httpx.AsyncClient(timeout=60)
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RpcProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # kept-alive client connections end their handlers
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        await self._client.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode().split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                method = str(orjson.loads(body).get("method"))
                self.seen.append(method)
                action = "forward" if self.rule is None else await self.rule(method)
                if action == "drop":
                    return
                resp = await self._client.post(
                    self.node.rpc_url, content=body,
                    headers={"authorization": headers.get("authorization", ""),
                             "content-type": "application/json"},
                )  # fmt: skip
                if action == "drop_after":
                    return
                writer.write(
                    f"HTTP/1.1 {resp.status_code} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(resp.content)}\r\n\r\n".encode()
                    + resp.content
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
