"""The coinbase transaction, split around the extranonce for Stratum.

Layout of the scriptSig: BIP34 height push, the template's coinbaseaux
flags, one push holding extranonce1 + extranonce2, then the pool tag.
coinb1 ends just before extranonce1 and coinb2 starts just after
extranonce2, so a miner rebuilds the transaction (txid form, no witness) as
coinb1 + extranonce1 + extranonce2 + coinb2.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashquarry.chain.encoding import bip34_height_push, push_data, varint
from hashquarry.chain.template import Template

MAX_SCRIPTSIG = 100  # consensus limit on the coinbase scriptSig
WITNESS_RESERVED_VALUE = bytes(32)
EXTRANONCE1_SIZE = 4


class CoinbaseError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    coinb1: bytes
    coinb2: bytes
    segwit: bool  # the block must carry the coinbase witness (reserved value)

    def assemble(self, extranonce: bytes) -> bytes:
        """The coinbase in txid form."""
        return self.coinb1 + extranonce + self.coinb2

    def assemble_for_block(self, extranonce: bytes) -> bytes:
        """The coinbase as serialized inside a block (with its witness when segwit)."""
        tx = self.coinb1 + extranonce + self.coinb2
        if not self.segwit:
            return tx
        # version | marker 00 flag 01 | inputs+outputs | witness: 1 item of 32 zero bytes | lock
        body = tx[4:-4]
        return tx[:4] + b"\x00\x01" + body + b"\x01\x20" + WITNESS_RESERVED_VALUE + tx[-4:]


def _output(value: int, script: bytes) -> bytes:
    return value.to_bytes(8, "little") + varint(len(script)) + script


def build_coinbase(
    template: Template,
    payout_script: bytes,
    *,
    tag: bytes,
    extranonce2_size: int,
    extranonce1_size: int = EXTRANONCE1_SIZE,
) -> CoinbaseParts:
    extranonce_size = extranonce1_size + extranonce2_size
    if extranonce_size >= 0x4C:
        raise CoinbaseError("extranonce too large for a single-byte push")
    head = bip34_height_push(template.height) + template.coinbase_flags
    tail = push_data(tag) if tag else b""
    script_len = len(head) + 1 + extranonce_size + len(tail)
    if script_len > MAX_SCRIPTSIG:
        raise CoinbaseError(
            f"coinbase scriptSig would be {script_len} bytes (limit {MAX_SCRIPTSIG}); "
            "shorten the pool tag"
        )
    outputs = [_output(template.coinbase_value, payout_script)]
    if template.witness_commitment is not None:
        outputs.append(_output(0, template.witness_commitment))

    coinb1 = (
        (1).to_bytes(4, "little")
        + b"\x01"
        + bytes(32)
        + b"\xff\xff\xff\xff"
        + varint(script_len)
        + head
        + bytes([extranonce_size])
    )
    coinb2 = (
        tail
        + b"\xff\xff\xff\xff"
        + varint(len(outputs))
        + b"".join(outputs)
        + (0).to_bytes(4, "little")
    )
    return CoinbaseParts(
        coinb1=coinb1, coinb2=coinb2, segwit=template.witness_commitment is not None
    )


def serialize_header(
    version: int, prev_hash: bytes, merkle_root: bytes, ntime: int, bits: int, nonce: int
) -> bytes:
    return (
        version.to_bytes(4, "little")
        + prev_hash
        + merkle_root
        + ntime.to_bytes(4, "little")
        + bits.to_bytes(4, "little")
        + nonce.to_bytes(4, "little")
    )


def assemble_block(header: bytes, coinbase_in_block: bytes, template: Template) -> bytes:
    return (
        header
        + varint(1 + len(template.transactions))
        + coinbase_in_block
        + b"".join(tx.data for tx in template.transactions)
    )
