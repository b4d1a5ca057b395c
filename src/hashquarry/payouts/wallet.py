"""What the node's wallet says about payouts.

The wallet is the only witness of whether a payout was made: every sendmany carries
`hashquarry:<payout id>` as its comment, and the wallet is searched for it. The
decisions drawn from its answers are plain functions (no I/O) so they can be read and
tested on their own; `find_payments` is the one thin loop that asks the node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from hashquarry.chain.rpc import NodeAuthError, NodeError, NodeRpc, RpcError

COMMENT_PREFIX = "hashquarry:"
COIN = 100_000_000
PAGE = 500  # wallet entries per listtransactions call while searching
# Wallet times come from the node's clock, intent times from the payer's: they may be
# different hosts. Searching this much further back costs a page or two at most.
CLOCK_MARGIN = 2 * 3600.0

# RPC error codes with which the node refuses a sendmany before its wallet creates
# anything (bitcoind's rpc/protocol.h): the payout certainly did not happen. Every
# other error is ambiguous (e.g. -4 "transaction commit failed" can come after the
# wallet stored the transaction) and is settled by looking for the comment.
REFUSED_BEFORE_CREATING = frozenset(
    {
        -3,  # RPC_TYPE_ERROR: a bad amount
        -5,  # RPC_INVALID_ADDRESS_OR_KEY
        -6,  # RPC_WALLET_INSUFFICIENT_FUNDS
        -8,  # RPC_INVALID_PARAMETER (e.g. a duplicated address)
        -11,  # RPC_WALLET_INVALID_ACCOUNT_NAME
        -13,  # RPC_WALLET_UNLOCK_NEEDED
        -28,  # RPC_IN_WARMUP
        -32600,  # invalid request
        -32601,  # method not found (no wallet compiled in)
        -32602,  # invalid params
        -32700,  # parse error
    }
)


def amount_string(sats: int) -> str:
    """Base units to the wallet's decimal string (exact, no float)."""
    return f"{sats // COIN}.{sats % COIN:08d}"


def to_sats(value: float | str | Decimal) -> int:
    return int((Decimal(str(value)) * COIN).to_integral_value())


def comment_for(payout_id: str) -> str:
    return COMMENT_PREFIX + payout_id


def payout_id_of(comment: object) -> str | None:
    text = str(comment or "")
    return text[len(COMMENT_PREFIX) :] if text.startswith(COMMENT_PREFIX) else None


def refused_before_creating(exc: NodeError) -> bool:
    """True when the node's answer proves the wallet made no transaction."""
    if isinstance(exc, NodeAuthError):
        return True  # rejected at the HTTP layer, before any RPC ran
    return isinstance(exc, RpcError) and exc.code in REFUSED_BEFORE_CREATING


def node_answered(exc: NodeError) -> bool:
    """True when the node finished the call (it answered with an error): whatever the wallet
    did is in the wallet now. False for timeouts and lost connections, after which the
    node may still be working on the call."""
    return isinstance(exc, RpcError | NodeAuthError)


def scan_page(
    entries: Sequence[Mapping[str, Any]], wanted: Iterable[str], since: float, page_size: int
) -> tuple[dict[str, set[str]], bool]:
    """The txids of wanted payout ids in one listtransactions page, and whether an older
    page can still hold one: not when the page was short (the wallet's first entry was
    reached) or when it already reaches back before `since`."""
    want = set(wanted)
    found: dict[str, set[str]] = {}
    oldest = float("inf")
    for e in entries:
        when = e.get("time", e.get("timereceived"))
        if when is not None:
            oldest = min(oldest, float(when))
        pid = payout_id_of(e.get("comment"))
        if pid in want and e.get("txid"):
            found.setdefault(pid, set()).add(str(e["txid"]))
    more = len(entries) >= page_size and oldest >= since
    return found, more


async def find_payments(
    rpc: NodeRpc, payout_ids: Iterable[str], since: float, page_size: int = PAGE
) -> dict[str, list[str]]:
    """payout id -> the txids whose comment names it, searching the wallet from its newest
    entry back to `since` (Unix seconds, wallet clock) or its first entry.

    listtransactions pages from the newest entry (`skip` counts from there), so a
    transaction that arrives during the search pushes older entries further back: a page
    may repeat entries already seen, but none is skipped. Any node error propagates:
    an incomplete search must not be read as "not paid".
    """
    wanted = set(payout_ids)
    found: dict[str, set[str]] = {}
    if not wanted:
        return {}
    skip = 0
    while True:
        entries = await rpc.call("listtransactions", "*", page_size, skip)
        page, more = scan_page(entries, wanted, since, page_size)
        for pid, txids in page.items():
            found.setdefault(pid, set()).update(txids)
        if not more:
            break
        skip += page_size
    return {pid: sorted(txids) for pid, txids in found.items()}


def tx_state(tx: Mapping[str, Any], required: int) -> tuple[str, int]:
    """(status, confirmations) of a sent payout from its gettransaction answer.

    Negative confirmations: a conflicting transaction is in the chain, so this one is
    not (it may come back after a reorganisation). Abandoned: the wallet gave it up and
    its inputs are spendable again; it can still be mined if a node has it. Both are
    flagged rather than reversed: the money may yet arrive.
    """
    conf = int(tx.get("confirmations", 0))
    if conf < 0:
        return "conflicted", conf
    if conf >= required:
        return "confirmed", conf
    abandoned = bool(tx.get("abandoned")) or any(
        d.get("abandoned") for d in tx.get("details", ()) if isinstance(d, Mapping)
    )
    if conf == 0 and abandoned:
        return "abandoned", 0
    return "sent", conf


def sent_by_address(tx: Mapping[str, Any]) -> dict[str, int]:
    """What a wallet transaction paid to each address, in base units."""
    out: dict[str, int] = {}
    for d in tx.get("details", ()):
        if d.get("category") == "send" and d.get("address"):
            out[d["address"]] = out.get(d["address"], 0) - to_sats(d["amount"])
    return out
