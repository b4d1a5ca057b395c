"""Real Bitcoin mainnet data as test vectors for the sans-IO chain modules.

The vectors live in ``tests/vectors/*.json``; each says where it came from. Every vector is
self-checking where it can be: a header must hash to its published id *and* meet its own
target (which no made-up header can), a txid list must fold to the merkle root committed in
such a header, and a raw coinbase must hash to its block's first txid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hashquarry.chain.encoding import (
    bip34_height_push,
    push_data,
    read_bip34_height,
    read_varint,
    script_number,
    varint,
)
from hashquarry.chain.hashing import (
    hash_from_hex,
    hash_to_hex,
    hash_to_int,
    merkle_branch,
    merkle_root,
    merkle_root_from_branch,
    sha256d,
)
from hashquarry.chain.target import (
    DIFF1_TARGET,
    bits_to_difficulty,
    bits_to_target,
    difficulty_to_target,
    target_to_bits,
    target_to_difficulty,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


@cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


HEADERS: list[dict[str, Any]] = _load("block_headers.json")["headers"]
MERKLE_BLOCKS: list[dict[str, Any]] = _load("merkle_blocks.json")["blocks"]
COINBASES: list[dict[str, Any]] = _load("coinbase_txs.json")["coinbases"]
COMPACT: dict[str, Any] = _load("compact_targets.json")

HEADERS_BY_HASH = {h["hash"]: h for h in HEADERS}
BIG_BLOCK = max(MERKLE_BLOCKS, key=lambda b: len(b["txids"]))
BIP34_COINBASES = [c for c in COINBASES if c["bip34"]]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def _bits(hex_bits: str) -> int:
    return int(hex_bits, 16)


def serialize_header(h: dict[str, Any]) -> bytes:
    """The 80-byte header: little-endian ints, hashes in internal order."""
    return (
        h["version"].to_bytes(4, "little")
        + hash_from_hex(h["prev_hash"])
        + hash_from_hex(h["merkle_root"])
        + h["time"].to_bytes(4, "little")
        + _bits(h["bits"]).to_bytes(4, "little")
        + h["nonce"].to_bytes(4, "little")
    )


# --------------------------------------------------------------------------- headers


def test_vectors_all_name_a_source() -> None:
    for group in (HEADERS, MERKLE_BLOCKS, COINBASES):
        for v in group:
            assert v["source"], v["name"]
    for key in ("set_compact", "targets", "difficulty"):
        assert COMPACT[key]["source"]


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_serializes_to_80_bytes_matching_the_raw_header(h: dict[str, Any]) -> None:
    raw = serialize_header(h)
    assert len(raw) == 80
    if "raw" in h:
        assert raw.hex() == h["raw"]


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_sha256d_is_the_published_block_hash(h: dict[str, Any]) -> None:
    digest = sha256d(serialize_header(h))
    assert hash_to_hex(digest) == h["hash"]
    assert digest == hash_from_hex(h["hash"])


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_hash_meets_its_own_target(h: dict[str, Any]) -> None:
    digest = sha256d(serialize_header(h))
    target = bits_to_target(_bits(h["bits"]))
    assert hash_to_int(digest) <= target
    # The integer compared is the display hex read big-endian; its leading zero bytes are
    # the stored hash's trailing bytes.
    assert hash_to_int(digest) == int(h["hash"], 16)


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_hash_read_in_the_wrong_byte_order_misses_the_target(h: dict[str, Any]) -> None:
    # The classic pool bug: comparing the digest as a big-endian number. For a real block the
    # zero bytes are at the end of the digest, so that reading is far above any target.
    digest = sha256d(serialize_header(h))
    assert digest.endswith(b"\x00\x00\x00\x00")
    assert int.from_bytes(digest, "big") > bits_to_target(_bits(h["bits"]))


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_difficulty_from_bits(h: dict[str, Any]) -> None:
    bits = _bits(h["bits"])
    assert bits_to_difficulty(bits) == pytest.approx(h["difficulty"], rel=1e-12)
    assert target_to_difficulty(bits_to_target(bits)) == bits_to_difficulty(bits)


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_header_bits_round_trip(h: dict[str, Any]) -> None:
    bits = _bits(h["bits"])
    assert target_to_bits(bits_to_target(bits)) == bits


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_difficulty_to_target_inverts_header_difficulty(h: dict[str, Any]) -> None:
    target = bits_to_target(_bits(h["bits"]))
    back = difficulty_to_target(bits_to_difficulty(_bits(h["bits"])))
    # A float difficulty carries 53 bits; the target comes back to within that precision.
    assert abs(back - target) <= target * 2**-50


def test_block_100000_known_difficulty() -> None:
    assert bits_to_difficulty(0x1B04864C) == pytest.approx(14484.1623612254, rel=1e-12)


def test_genesis_bits_are_difficulty_one() -> None:
    assert bits_to_target(0x1D00FFFF) == DIFF1_TARGET
    assert bits_to_difficulty(0x1D00FFFF) == 1.0
    assert difficulty_to_target(1.0) == DIFF1_TARGET
    assert target_to_bits(DIFF1_TARGET) == 0x1D00FFFF


def test_headers_chain_where_consecutive() -> None:
    by_height = {h["height"]: h for h in HEADERS}
    for height, h in by_height.items():
        parent = by_height.get(height - 1)
        if parent is not None:
            assert h["prev_hash"] == parent["hash"]
    assert 0 in by_height
    assert 1 in by_height


def test_modern_header_has_version_rolling_bits() -> None:
    modern = [h for h in HEADERS if h["height"] >= 700_000]
    assert modern
    for h in modern:
        version = h["version"]
        assert version >> 29 == 0b001  # BIP9 top bits
        assert version & 0x1FFFE000  # BIP320 general-purpose bits in use (ASICBoost)


@pytest.mark.parametrize("h", HEADERS, ids=_ids(HEADERS))
def test_hash_hex_round_trip(h: dict[str, Any]) -> None:
    for display in (h["hash"], h["prev_hash"], h["merkle_root"]):
        internal = hash_from_hex(display)
        assert len(internal) == 32
        assert hash_to_hex(internal) == display


# --------------------------------------------------------------------------- merkle


@pytest.mark.parametrize("block", MERKLE_BLOCKS, ids=_ids(MERKLE_BLOCKS))
def test_merkle_root_of_real_txids(block: dict[str, Any]) -> None:
    txids = [hash_from_hex(t) for t in block["txids"]]
    assert len(txids) == block["n_tx"]
    assert len(set(txids)) == len(txids)
    assert hash_to_hex(merkle_root(txids)) == block["merkle_root"]


@pytest.mark.parametrize("block", MERKLE_BLOCKS, ids=_ids(MERKLE_BLOCKS))
def test_merkle_root_is_the_one_committed_in_a_proven_header(block: dict[str, Any]) -> None:
    header = HEADERS_BY_HASH[block["hash"]]
    assert header["merkle_root"] == block["merkle_root"]
    assert hash_to_hex(sha256d(serialize_header(header))) == block["hash"]


@pytest.mark.parametrize("block", MERKLE_BLOCKS, ids=_ids(MERKLE_BLOCKS))
def test_merkle_branch_for_the_coinbase_folds_to_the_root(block: dict[str, Any]) -> None:
    txids = [hash_from_hex(t) for t in block["txids"]]
    branch = merkle_branch(txids[1:])
    assert len(branch) == (len(txids) - 1).bit_length()
    root = merkle_root_from_branch(txids[0], branch)
    assert hash_to_hex(root) == block["merkle_root"]


def test_big_block_really_is_big() -> None:
    assert len(BIG_BLOCK["txids"]) >= 100
    # 374 leaves: levels of 187, 47 and 3 nodes are odd, so the duplicate-last rule is hit.
    assert BIG_BLOCK["n_tx"] == 374


def test_merkle_branch_depends_on_every_txid() -> None:
    txids = [hash_from_hex(t) for t in BIG_BLOCK["txids"]]
    root = merkle_root(txids)
    for i in (1, 2, 186, 187, len(txids) - 1):
        tampered = list(txids)
        tampered[i] = sha256d(tampered[i])
        assert merkle_root(tampered) != root
        branch = merkle_branch(tampered[1:])
        assert merkle_root_from_branch(tampered[0], branch) == merkle_root(tampered)


def test_merkle_branch_with_a_different_coinbase_gives_a_different_root() -> None:
    txids = [hash_from_hex(t) for t in BIG_BLOCK["txids"]]
    branch = merkle_branch(txids[1:])
    other = sha256d(b"not the coinbase")
    assert merkle_root_from_branch(other, branch) == merkle_root([other, *txids[1:]])
    assert merkle_root_from_branch(other, branch) != merkle_root(txids)


def test_merkle_branch_prefixes_work_for_every_size() -> None:
    # Every prefix of a real txid list is a valid tx list shape: the branch must always agree
    # with the full recomputation (sizes 1..40 cover all odd/even level patterns up to 2^5).
    txids = [hash_from_hex(t) for t in BIG_BLOCK["txids"]]
    for n in range(1, 41):
        leaves = txids[:n]
        assert merkle_root_from_branch(leaves[0], merkle_branch(leaves[1:])) == merkle_root(leaves)


def test_single_tx_block_root_is_the_txid() -> None:
    block = next(b for b in MERKLE_BLOCKS if b["n_tx"] == 1)
    txid = hash_from_hex(block["txids"][0])
    assert merkle_root([txid]) == txid
    assert merkle_branch([]) == []
    assert merkle_root_from_branch(txid, []) == txid


def test_merkle_root_rejects_empty() -> None:
    with pytest.raises(ValueError):
        merkle_root([])


# --------------------------------------------------------------------------- coinbase


@dataclass(frozen=True)
class ParsedTx:
    version: int
    segwit: bool
    prevouts: list[bytes]
    script_sigs: list[bytes]
    sequences: list[int]
    outputs: list[tuple[int, bytes]]
    witnesses: list[list[bytes]]
    locktime: int
    stripped: bytes  # non-witness serialization (what the txid hashes)


def parse_tx(raw: bytes) -> ParsedTx:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(raw):
            raise ValueError("truncated transaction")
        chunk = raw[pos : pos + n]
        pos += n
        return chunk

    def take_varint() -> int:
        nonlocal pos
        value, pos = read_varint(raw, pos)
        return value

    version = int.from_bytes(take(4), "little")
    segwit = raw[pos] == 0 and raw[pos + 1] == 1
    if segwit:
        take(2)
    body_start = pos
    prevouts, script_sigs, sequences = [], [], []
    for _ in range(take_varint()):
        prevouts.append(take(36))
        script_sigs.append(take(take_varint()))
        sequences.append(int.from_bytes(take(4), "little"))
    outputs = []
    for _ in range(take_varint()):
        value = int.from_bytes(take(8), "little")
        outputs.append((value, take(take_varint())))
    body_end = pos
    witnesses: list[list[bytes]] = []
    if segwit:
        for _ in prevouts:
            witnesses.append([take(take_varint()) for _ in range(take_varint())])
    locktime_bytes = take(4)
    if pos != len(raw):
        raise ValueError("trailing bytes after transaction")
    stripped = raw[:4] + raw[body_start:body_end] + locktime_bytes
    return ParsedTx(
        version=version,
        segwit=segwit,
        prevouts=prevouts,
        script_sigs=script_sigs,
        sequences=sequences,
        outputs=outputs,
        witnesses=witnesses,
        locktime=int.from_bytes(locktime_bytes, "little"),
        stripped=stripped,
    )


NULL_PREVOUT = b"\x00" * 32 + b"\xff\xff\xff\xff"


@pytest.mark.parametrize("cb", COINBASES, ids=_ids(COINBASES))
def test_coinbase_parses_as_a_coinbase(cb: dict[str, Any]) -> None:
    tx = parse_tx(bytes.fromhex(cb["raw"]))
    assert tx.version == cb["version"]
    assert tx.segwit is cb["segwit"]
    assert tx.prevouts == [NULL_PREVOUT]
    assert [s.hex() for s in tx.script_sigs] == [cb["script_sig"]]
    assert 2 <= len(tx.script_sigs[0]) <= 100  # consensus bounds on a coinbase scriptSig
    assert tx.sequences == [cb["sequence"]]
    assert [(v, s.hex()) for v, s in tx.outputs] == [
        (o["value"], o["script_pubkey"]) for o in cb["outputs"]
    ]
    assert tx.locktime == cb["locktime"]
    if cb["segwit"]:
        assert [[w.hex() for w in stack] for stack in tx.witnesses] == [cb["witness"]]
    else:
        assert tx.witnesses == []


@pytest.mark.parametrize("cb", COINBASES, ids=_ids(COINBASES))
def test_coinbase_txid(cb: dict[str, Any]) -> None:
    raw = bytes.fromhex(cb["raw"])
    tx = parse_tx(raw)
    assert hash_to_hex(sha256d(tx.stripped)) == cb["txid"]
    if cb["segwit"]:
        # Hashing the witness serialization gives the wtxid, not the txid.
        assert hash_to_hex(sha256d(raw)) != cb["txid"]
    else:
        assert tx.stripped == raw


@pytest.mark.parametrize("cb", COINBASES, ids=_ids(COINBASES))
def test_coinbase_is_tx_zero_of_its_block(cb: dict[str, Any]) -> None:
    block = next(b for b in MERKLE_BLOCKS if b["hash"] == cb["block_hash"])
    assert block["txids"][0] == cb["txid"]
    # What a Stratum miner does: hash its coinbase, fold it through the branch, get the
    # root committed in the (proof-of-work-checked) header.
    coinbase_hash = sha256d(parse_tx(bytes.fromhex(cb["raw"])).stripped)
    branch = merkle_branch([hash_from_hex(t) for t in block["txids"][1:]])
    root = merkle_root_from_branch(coinbase_hash, branch)
    assert hash_to_hex(root) == HEADERS_BY_HASH[cb["block_hash"]]["merkle_root"]


@pytest.mark.parametrize("cb", BIP34_COINBASES, ids=_ids(BIP34_COINBASES))
def test_coinbase_bip34_height(cb: dict[str, Any]) -> None:
    assert cb["height"] >= 227_931  # BIP34 activation on mainnet
    script_sig = parse_tx(bytes.fromhex(cb["raw"])).script_sigs[0]
    assert read_bip34_height(script_sig) == cb["height"]
    push = bip34_height_push(cb["height"])
    assert script_sig.startswith(push)
    assert push == push_data(script_number(cb["height"]))


def test_bip34_push_bytes_of_block_951658() -> None:
    assert script_number(951658) == bytes.fromhex("6a850e")
    assert bip34_height_push(951658) == bytes.fromhex("036a850e")


def test_pre_bip34_coinbase_does_not_encode_its_height() -> None:
    cb = next(c for c in COINBASES if not c["bip34"])
    script_sig = parse_tx(bytes.fromhex(cb["raw"])).script_sigs[0]
    assert not script_sig.startswith(bip34_height_push(cb["height"]))


def test_segwit_coinbase_carries_the_witness_commitment() -> None:
    cb = next(c for c in COINBASES if c["segwit"])
    tx = parse_tx(bytes.fromhex(cb["raw"]))
    commitments = [s for _, s in tx.outputs if s.startswith(bytes.fromhex("6a24aa21a9ed"))]
    assert len(commitments) == 1
    assert len(commitments[0]) == 38
    assert tx.witnesses == [[b"\x00" * 32]]  # the witness reserved value


# --------------------------------------------------------------------------- varints


def test_varints_of_real_block_951658() -> None:
    # The tx count right after the header, and the coinbase scriptSig length.
    assert varint(374) == bytes.fromhex("fd7601")
    assert read_varint(bytes.fromhex("fd7601"), 0) == (374, 3)
    cb = next(c for c in COINBASES if c["height"] == 951658)
    raw = bytes.fromhex(cb["raw"])
    script_len_pos = 4 + 2 + 1 + 36
    length, pos = read_varint(raw, script_len_pos)
    assert length == len(bytes.fromhex(cb["script_sig"])) == 0x2B
    assert pos == script_len_pos + 1


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (0xFC, "fc"),
        (0xFD, "fdfd00"),
        (0xFFFF, "fdffff"),
        (0x10000, "fe00000100"),
        (0xFFFFFFFF, "feffffffff"),
        (0x100000000, "ff0000000001000000"),
    ],
)
def test_varint_boundaries(n: int, encoded: str) -> None:
    assert varint(n).hex() == encoded
    assert read_varint(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


def test_read_varint_rejects_truncation() -> None:
    with pytest.raises(ValueError):
        read_varint(bytes.fromhex("fd01"), 0)


# --------------------------------------------------------------------------- compact bits


SET_COMPACT: list[dict[str, Any]] = COMPACT["set_compact"]["cases"]


@pytest.mark.parametrize("case", SET_COMPACT, ids=[c["bits"] for c in SET_COMPACT])
def test_bits_to_target_bitcoin_core_vectors(case: dict[str, Any]) -> None:
    target = bits_to_target(_bits(case["bits"]))
    assert target == int(case["target"], 16)
    if case["compact"] is not None:
        assert target_to_bits(target) == _bits(case["compact"])


@pytest.mark.parametrize("bits", COMPACT["set_compact"]["negative"])
def test_negative_compact_is_rejected(bits: str) -> None:
    with pytest.raises(ValueError):
        bits_to_target(_bits(bits))


@pytest.mark.parametrize(
    "case",
    COMPACT["set_compact"]["target_to_compact"],
    ids=[c["target"] for c in COMPACT["set_compact"]["target_to_compact"]],
)
def test_target_to_bits_never_sets_the_sign_bit(case: dict[str, Any]) -> None:
    bits = target_to_bits(int(case["target"], 16))
    assert bits == _bits(case["compact"])
    assert not bits & 0x00800000
    assert bits_to_target(bits) == int(case["target"], 16)


TARGET_CASES: list[dict[str, Any]] = COMPACT["targets"]["cases"]


@pytest.mark.parametrize("case", TARGET_CASES, ids=[c["bits"] for c in TARGET_CASES])
def test_bits_to_target_bitcoinjs_vectors(case: dict[str, Any]) -> None:
    target = bits_to_target(_bits(case["bits"]))
    assert target.to_bytes(32, "big").hex() == case["target"]
    assert target_to_bits(target) == _bits(case["bits"])


DIFFICULTY_CASES: list[dict[str, Any]] = COMPACT["difficulty"]["cases"]


@pytest.mark.parametrize("case", DIFFICULTY_CASES, ids=[c["bits"] for c in DIFFICULTY_CASES])
def test_difficulty_bitcoin_core_vectors(case: dict[str, Any]) -> None:
    got = bits_to_difficulty(_bits(case["bits"]))
    want = case["difficulty"]
    if want >= 1e6:
        assert got == pytest.approx(want, rel=1e-12)
    else:
        assert got == pytest.approx(want, abs=COMPACT["difficulty"]["abs_tolerance"])


def test_regtest_pow_limit_bits() -> None:
    # 0x207fffff: regtest's powLimit; the easiest target compact bits can express positively.
    target = bits_to_target(0x207FFFFF)
    assert target == 0x7FFFFF << (8 * 29)
    assert target_to_bits(target) == 0x207FFFFF
    assert bits_to_difficulty(0x207FFFFF) == pytest.approx(DIFF1_TARGET / target)


SIGN_BIT_CASES: list[dict[str, Any]] = COMPACT["difficulty"]["sign_bit_cases"]["cases"]


@pytest.mark.parametrize("case", SIGN_BIT_CASES, ids=[c["bits"] for c in SIGN_BIT_CASES])
def test_sign_bit_difficulty_vectors_are_not_valid_targets(case: dict[str, Any]) -> None:
    bits = _bits(case["bits"])
    with pytest.raises(ValueError):
        bits_to_target(bits)
    # Core's display value is the whole 24-bit field read as the mantissa.
    exponent, field = bits >> 24, bits & 0x00FFFFFF
    assert target_to_difficulty(field << (8 * (exponent - 3))) == pytest.approx(
        case["difficulty"], abs=COMPACT["difficulty"]["abs_tolerance"]
    )
