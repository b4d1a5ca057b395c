"""A getblocktemplate answer, parsed and checked once at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hashquarry.chain.hashing import merkle_branch, sha256d
from hashquarry.chain.target import bits_to_target


class TemplateError(ValueError):
    """The node's template is missing a field or has a malformed one."""


@dataclass(frozen=True, slots=True)
class TemplateTx:
    data: bytes
    txid: bytes  # internal order
    fee: int


@dataclass(frozen=True, slots=True)
class Template:
    height: int
    version: int
    prev_hash: bytes  # internal order
    bits: int
    target: int
    curtime: int
    mintime: int
    coinbase_value: int
    transactions: tuple[TemplateTx, ...]
    witness_commitment: bytes | None  # the scriptPubKey of the commitment output
    coinbase_flags: bytes
    branch: tuple[bytes, ...]

    @property
    def prev_hash_hex(self) -> str:
        return self.prev_hash[::-1].hex()

    fees: int = 0  # sum of the transactions' fees, computed once at parse


def _field(gbt: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in gbt:
        raise TemplateError(f"template field {name!r} is missing")
    value = gbt[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TemplateError(f"template field {name!r} has type {type(value).__name__}")
    return value


def _hex(value: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise TemplateError(f"template field {name!r} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise TemplateError(f"template field {name!r} is not hex") from None
    if size is not None and len(raw) != size:
        raise TemplateError(f"template field {name!r} must be {size} bytes, got {len(raw)}")
    return raw


def parse_template(gbt: dict[str, Any]) -> Template:
    if not isinstance(gbt, dict):
        raise TemplateError("template is not a JSON object")
    height = _field(gbt, "height", int)
    version = _field(gbt, "version", int)
    prev = _hex(_field(gbt, "previousblockhash", str), "previousblockhash", 32)[::-1]
    bits = int.from_bytes(_hex(_field(gbt, "bits", str), "bits", 4), "big")
    if isinstance(gbt.get("target"), str):
        target = int.from_bytes(_hex(gbt["target"], "target", 32), "big")
    else:
        try:
            target = bits_to_target(bits)
        except ValueError as exc:
            raise TemplateError(f"template field 'bits': {exc}") from None
    curtime = _field(gbt, "curtime", int)
    mintime = gbt.get("mintime", curtime)
    if not isinstance(mintime, int):
        raise TemplateError("template field 'mintime' must be an integer")
    coinbase_value = _field(gbt, "coinbasevalue", int)
    if coinbase_value < 0:
        raise TemplateError("template field 'coinbasevalue' is negative")

    txs: list[TemplateTx] = []
    for i, raw_tx in enumerate(_field(gbt, "transactions", list)):
        if not isinstance(raw_tx, dict):
            raise TemplateError(f"template transaction {i} is not an object")
        data = _hex(raw_tx.get("data"), f"transactions[{i}].data")
        # Core gives txid (and hash = wtxid); older nodes give only hash = txid.
        txid_hex = raw_tx.get("txid") or raw_tx.get("hash")
        txid = _hex(txid_hex, f"transactions[{i}].txid", 32)[::-1] if txid_hex else sha256d(data)
        fee = raw_tx.get("fee", 0)
        txs.append(TemplateTx(data=data, txid=txid, fee=fee if isinstance(fee, int) else 0))

    commitment_hex = gbt.get("default_witness_commitment")
    commitment = _hex(commitment_hex, "default_witness_commitment") if commitment_hex else None
    aux = gbt.get("coinbaseaux") or {}
    flags = _hex(aux.get("flags", ""), "coinbaseaux.flags") if isinstance(aux, dict) else b""

    return Template(
        height=height,
        version=version,
        prev_hash=prev,
        bits=bits,
        target=target,
        curtime=curtime,
        mintime=mintime,
        coinbase_value=coinbase_value,
        transactions=tuple(txs),
        witness_commitment=commitment,
        coinbase_flags=flags,
        branch=tuple(merkle_branch([tx.txid for tx in txs])),
        fees=sum(tx.fee for tx in txs),
    )
