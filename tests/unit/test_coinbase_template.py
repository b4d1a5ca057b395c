"""getblocktemplate parsing, the split coinbase, and BIP34 height pushes."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.chain.coinbase import MAX_SCRIPTSIG, CoinbaseError, build_coinbase
from hashquarry.chain.encoding import (
    bip34_height_push,
    push_data,
    read_bip34_height,
    read_varint,
    script_number,
)
from hashquarry.chain.hashing import merkle_branch, sha256d
from hashquarry.chain.target import bits_to_target
from hashquarry.chain.template import TemplateError, parse_template

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Kit


def script_sig_of(coinbase_tx: bytes) -> bytes:
    """The scriptSig of a txid-form coinbase (version, 1 input, null prevout...)."""
    assert coinbase_tx[4] == 1  # one input
    assert coinbase_tx[5:37] == bytes(32) and coinbase_tx[37:41] == b"\xff\xff\xff\xff"
    length, pos = read_varint(coinbase_tx, 41)
    return coinbase_tx[pos : pos + length]


# -- parse_template -------------------------------------------------------------------------


def test_parse_realistic_template(kit: Kit) -> None:
    gbt = kit.make_gbt(segwit=True, n_tx=4)
    t = parse_template(gbt)
    assert t.height == 500 and t.version == 0x20000000
    assert t.prev_hash == bytes.fromhex(kit.PREV_A)[::-1]
    assert t.prev_hash_hex == kit.PREV_A
    assert t.bits == 0x1D00FFFF and t.target == bits_to_target(0x1D00FFFF)
    assert t.curtime == kit.CURTIME and t.mintime == kit.CURTIME - 1800
    assert t.coinbase_value == gbt["coinbasevalue"]
    assert t.fees == sum(tx["fee"] for tx in gbt["transactions"])
    assert [tx.data.hex() for tx in t.transactions] == [tx["data"] for tx in gbt["transactions"]]
    assert [tx.txid[::-1].hex() for tx in t.transactions] == [
        tx["txid"] for tx in gbt["transactions"]
    ]
    # txids are of the stripped form, so a segwit transaction's txid is not sha256d(data).
    assert t.transactions[0].txid != sha256d(t.transactions[0].data)
    assert t.branch == tuple(merkle_branch([tx.txid for tx in t.transactions]))
    assert t.witness_commitment == bytes.fromhex(gbt["default_witness_commitment"])
    assert t.witness_commitment[:6] == kit.WITNESS_MAGIC and len(t.witness_commitment) == 38
    assert t.coinbase_flags == b""


def test_parse_without_optional_fields(kit: Kit) -> None:
    gbt = kit.make_gbt(n_tx=2)
    for key in ("target", "mintime", "coinbaseaux"):
        del gbt[key]
    gbt["transactions"][0].pop("txid")  # an older node: only hash (= txid)
    del gbt["transactions"][1]["txid"]
    del gbt["transactions"][1]["hash"]
    t = parse_template(gbt)
    assert t.target == bits_to_target(0x1D00FFFF)
    assert t.mintime == t.curtime
    assert t.witness_commitment is None
    for tx in t.transactions:  # legacy transactions: txid = sha256d(data) either way
        assert tx.txid == sha256d(tx.data)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda g: g.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda g: g.__setitem__(key, value)


def _tx_set(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda g: g["transactions"][i].__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (_drop("height"), "'height' is missing"),
        (_set("height", "500"), "'height' has type str"),
        (_set("height", True), "'height' has type bool"),
        (_drop("bits"), "'bits' is missing"),
        (_set("bits", "zz00ffff"), "'bits' is not hex"),
        (_set("bits", "00ffff"), "'bits' must be 4 bytes, got 3"),
        (_set("bits", 0x1D00FFFF), "'bits' has type int"),
        (_drop("previousblockhash"), "'previousblockhash' is missing"),
        (_set("previousblockhash", "00" * 31), "'previousblockhash' must be 32 bytes"),
        (_drop("coinbasevalue"), "'coinbasevalue' is missing"),
        (_set("coinbasevalue", -1), "'coinbasevalue' is negative"),
        (_drop("curtime"), "'curtime' is missing"),
        (_set("mintime", "soon"), "'mintime' must be an integer"),
        (_set("transactions", {}), "'transactions' has type dict"),
        (_tx_set(1, "data", "not hex!"), "'transactions[1].data' is not hex"),
        (_tx_set(2, "data", None), "'transactions[2].data' must be a hex string"),
        (_tx_set(0, "txid", "ab" * 31), "'transactions[0].txid' must be 32 bytes"),
        (_tx_set(0, "txid", "xy" * 32), "'transactions[0].txid' is not hex"),
        (lambda g: g["transactions"].append("00"), "transaction 3 is not an object"),
        (_set("default_witness_commitment", "6a24zz"), "'default_witness_commitment' is not hex"),
        (_set("coinbaseaux", {"flags": "0g"}), "'coinbaseaux.flags' is not hex"),
    ],
)
def test_parse_errors_name_the_field(
    kit: Kit, mutate: Callable[[dict[str, Any]], None], text: str
) -> None:
    gbt = copy.deepcopy(kit.make_gbt(n_tx=3))
    mutate(gbt)
    with pytest.raises(TemplateError) as info:
        parse_template(gbt)
    assert text in str(info.value)


def test_parse_rejects_non_object() -> None:
    with pytest.raises(TemplateError, match="not a JSON object"):
        parse_template([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mutate", "text"),
    [
        (_set("target", "zz" * 32), "'target'"),
        (lambda g: (g.pop("target"), g.__setitem__("bits", "1d80ffff")), "'bits'"),
    ],
)
def test_parse_bad_target_is_a_template_error(
    kit: Kit, mutate: Callable[[dict[str, Any]], None], text: str
) -> None:
    gbt = kit.make_gbt()
    mutate(gbt)
    with pytest.raises(TemplateError) as info:
        parse_template(gbt)
    assert text in str(info.value)


# -- the coinbase ---------------------------------------------------------------------------


@pytest.mark.parametrize("en2_size", [2, 4, 8, 16])
def test_coinbase_split_around_extranonce(kit: Kit, en2_size: int) -> None:
    t = kit.template(segwit=True)
    parts = build_coinbase(t, kit.payout_script, tag=b"/hq/", extranonce2_size=en2_size)
    # coinb1 ends with the push opcode of the extranonce; coinb2 starts with the tag push.
    assert parts.coinb1[-1] == 4 + en2_size
    assert parts.coinb2.startswith(push_data(b"/hq/"))
    extranonce = bytes(range(1, 5 + en2_size))
    tx = parts.assemble(extranonce)
    script_sig = script_sig_of(tx)
    assert script_sig == bip34_height_push(500) + bytes([4 + en2_size]) + extranonce + b"\x04/hq/"
    assert read_bip34_height(script_sig) == 500
    assert parts.segwit
    assert tx.endswith(bytes(4))  # lock time 0


def test_coinbase_includes_coinbaseaux_flags(kit: Kit) -> None:
    gbt = kit.make_gbt()
    gbt["coinbaseaux"] = {"flags": "062f503253482f"}
    t = parse_template(gbt)
    parts = build_coinbase(t, kit.payout_script, tag=b"", extranonce2_size=4)
    script_sig = script_sig_of(parts.assemble(bytes(8)))
    flags = bytes.fromhex("062f503253482f")
    assert script_sig == bip34_height_push(500) + flags + b"\x08" + bytes(8)


@pytest.mark.parametrize("height", [1, 500, 2**31 - 1])
@pytest.mark.parametrize("en2_size", [2, 8, 16])
def test_scriptsig_never_exceeds_100_bytes(kit: Kit, height: int, en2_size: int) -> None:
    t = kit.template(height=height)
    fits = 0
    for tag_len in range(0, 120):
        tag = b"t" * tag_len
        try:
            parts = build_coinbase(t, kit.payout_script, tag=tag, extranonce2_size=en2_size)
        except CoinbaseError as exc:
            assert "shorten the pool tag" in str(exc) and f"limit {MAX_SCRIPTSIG}" in str(exc)
            # Only because it really would be too long.
            head = len(bip34_height_push(height)) + 1 + 4 + en2_size
            assert head + len(push_data(tag)) > MAX_SCRIPTSIG
            continue
        fits = tag_len
        script_sig = script_sig_of(parts.assemble(bytes(4 + en2_size)))
        assert len(script_sig) <= MAX_SCRIPTSIG == 100
        assert script_sig.endswith(tag)
    assert fits > 40  # the config allows 40-character tags; they must fit


def test_overlong_tag_raises(kit: Kit) -> None:
    with pytest.raises(CoinbaseError, match="shorten the pool tag"):
        build_coinbase(kit.template(), kit.payout_script, tag=b"x" * 100, extranonce2_size=8)


def test_extranonce_too_large_for_one_push(kit: Kit) -> None:
    with pytest.raises(CoinbaseError, match="extranonce too large"):
        build_coinbase(kit.template(), kit.payout_script, tag=b"", extranonce2_size=72)


def test_coinbase_outputs(kit: Kit) -> None:
    for segwit in (False, True):
        t = kit.template(segwit=segwit)
        parts = build_coinbase(t, kit.payout_script, tag=b"/hq/", extranonce2_size=4)
        cb, end = kit.parse_tx(parts.assemble(bytes(8)))
        assert end == len(parts.assemble(bytes(8)))
        expected = [(t.coinbase_value, kit.payout_script)]
        if segwit:
            assert t.witness_commitment is not None
            expected.append((0, t.witness_commitment))
        assert cb.outputs == expected
        block_form, _ = kit.parse_tx(parts.assemble_for_block(bytes(8)))
        assert block_form.stripped == parts.assemble(bytes(8))
        assert block_form.witness == ([[bytes(32)]] if segwit else None)


# -- BIP34 height pushes --------------------------------------------------------------------

# `CScript() << height` as Bitcoin Core serializes it (OP_0, OP_1..OP_16, minimal CScriptNum).
BIP34_PUSHES = [
    (0, "00"),
    (1, "51"),
    (16, "60"),
    (17, "0111"),
    (127, "017f"),
    (128, "028000"),
    (255, "02ff00"),
    (256, "020001"),
    (32767, "02ff7f"),
    (32768, "03008000"),
    (65535, "03ffff00"),
    (8388607, "03ffff7f"),
    (8388608, "0400008000"),
    (2**31 - 1, "04ffffff7f"),
]


@pytest.mark.parametrize(("height", "push_hex"), BIP34_PUSHES)
def test_bip34_push_bytes_and_round_trip(height: int, push_hex: str) -> None:
    push = bip34_height_push(height)
    assert push.hex() == push_hex
    assert read_bip34_height(push) == height
    assert read_bip34_height(push + b"\x08" + bytes(8) + b"/tag/") == height


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_bip34_round_trip_any_height(height: int) -> None:
    push = bip34_height_push(height)
    assert read_bip34_height(push + b"\x04\xde\xad\xbe\xef") == height
    if height > 16:
        body = script_number(height)
        assert push == bytes([len(body)]) + body
        assert body[-1] != 0 or body[-2] & 0x80  # minimal: no needless zero byte
    assert len(push) <= 5


@pytest.mark.parametrize("script", [b"", b"\x4c\x01\x01", b"\x03\x01\x02", b"\x6a"])
def test_read_bip34_height_rejects_non_height_scripts(script: bytes) -> None:
    with pytest.raises(ValueError):
        read_bip34_height(script)


def test_negative_height_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        bip34_height_push(-1)
