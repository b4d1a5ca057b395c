from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.chain.hashing import (
    hash_from_hex,
    hash_to_hex,
    hash_to_int,
    merkle_branch,
    merkle_root,
    sha256d,
)
from hashquarry.chain.target import DIFF1_TARGET, MAX_TARGET, difficulty_to_target
from hashquarry.miner.work import (
    BIP320_VERSION_MASK,
    Job,
    build_coinbase,
    build_header,
    hashrate_from_shares,
    header_prefix,
    mask_capacity,
    merkle_root_for,
    prevhash_from_notify,
    prevhash_to_notify,
    roll_version,
    scan,
    spread_bits,
    u32_hex,
    version_bits_hex,
)

GENESIS_COINBASE = (
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04"
    "ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e"
    "206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f205"
    "2a01000000434104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6"
    "bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac00000000"
)
GENESIS_MERKLE = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
GENESIS_HEADER = (
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_TIME = 1231006505
GENESIS_NONCE = 2083236893


def genesis_job(split: int = 100) -> Job:
    return Job(
        job_id="genesis",
        prevhash="00" * 32,
        coinb1=GENESIS_COINBASE[:split],
        coinb2=GENESIS_COINBASE[split:],
        merkle_branch=[],
        version="00000001",
        nbits="1d00ffff",
        ntime=f"{GENESIS_TIME:08x}",
        clean=True,
    )


def notify_params(**overrides: object) -> list[object]:
    base: dict[str, object] = {
        "job_id": "1a",
        "prevhash": "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
        "coinb1": "0100",
        "coinb2": "ff00",
        "merkle_branch": ["11" * 32, "22" * 32],
        "version": "20000000",
        "nbits": "207fffff",
        "ntime": "504e86b9",
        "clean": True,
    }
    base.update(overrides)
    return list(base.values())


# --- prevhash ---


@given(st.binary(min_size=32, max_size=32))
def test_prevhash_notify_round_trip(internal: bytes) -> None:
    notify = prevhash_to_notify(internal)
    assert len(notify) == 64
    assert prevhash_from_notify(notify) == internal
    # The notify form is the display hex with its 4-byte words in reverse order.
    display = hash_to_hex(internal)
    words = [display[i : i + 8] for i in range(0, 64, 8)]
    assert notify == "".join(reversed(words))


@given(st.binary(min_size=32, max_size=32))
def test_prevhash_from_notify_is_an_involution_on_hex(raw: bytes) -> None:
    notify = raw.hex()
    assert prevhash_to_notify(prevhash_from_notify(notify)) == notify


def test_prevhash_known_vector() -> None:
    # The notify example from the original Stratum documentation and its block hash.
    display = "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
    notify = "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"
    assert prevhash_to_notify(hash_from_hex(display)) == notify
    assert prevhash_from_notify(notify) == hash_from_hex(display)


@pytest.mark.parametrize("bad", ["00" * 31, "00" * 33])
def test_prevhash_wrong_length(bad: str) -> None:
    with pytest.raises(ValueError):
        prevhash_from_notify(bad)
    with pytest.raises(ValueError):
        prevhash_to_notify(bytes.fromhex(bad))


# --- Job.from_notify ---


def test_from_notify_parses() -> None:
    job = Job.from_notify(notify_params())
    assert job.job_id == "1a"
    assert job.merkle_branch == ["11" * 32, "22" * 32]
    assert job.version_int == 0x20000000
    assert job.nbits_int == 0x207FFFFF
    assert job.ntime_int == 0x504E86B9
    assert job.clean is True
    assert job.difficulty == 1.0


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("job_id", 5, "job_id"),
        ("job_id", "", "job_id"),
        ("prevhash", "00" * 31, "prevhash"),
        ("prevhash", None, "prevhash"),
        ("coinb1", "xyz", "coinb1"),
        ("coinb2", 12, "coinb2"),
        ("merkle_branch", "11" * 32, "merkle_branch"),
        ("merkle_branch", ["11" * 31], "merkle_branch[0]"),
        ("version", "2000000", "version"),
        ("nbits", 0x207FFFFF, "nbits"),
        ("ntime", "504e86b9ff", "ntime"),
        ("clean", "true", "clean_jobs"),
    ],
)
def test_from_notify_names_bad_field(field: str, value: object, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        Job.from_notify(notify_params(**{field: value}))


def test_from_notify_too_short() -> None:
    with pytest.raises(ValueError, match="9 params"):
        Job.from_notify(notify_params()[:8])


# --- header against the genesis block ---


@pytest.mark.parametrize("split", [0, 1, 100, 203, len(GENESIS_COINBASE)])
def test_build_header_genesis(split: int) -> None:
    job = genesis_job(split - split % 2)
    coinbase = build_coinbase(job, b"", b"")
    assert coinbase.hex() == GENESIS_COINBASE
    assert hash_to_hex(merkle_root_for(job, coinbase)) == GENESIS_MERKLE
    header = build_header(job, b"", b"", GENESIS_TIME, GENESIS_NONCE, 1)
    assert len(header) == 80
    assert header.hex() == GENESIS_HEADER
    assert hash_to_hex(sha256d(header)) == GENESIS_HASH


def test_extranonces_sit_between_coinb1_and_coinb2() -> None:
    # Cut the genesis coinbase twice and feed the middle back as extranonce1 + extranonce2.
    job = replace(genesis_job(), coinb2=GENESIS_COINBASE[112:])
    en1, en2 = bytes.fromhex(GENESIS_COINBASE[100:108]), bytes.fromhex(GENESIS_COINBASE[108:112])
    header = build_header(job, en1, en2, GENESIS_TIME, GENESIS_NONCE, 1)
    assert hash_to_hex(sha256d(header)) == GENESIS_HASH


def test_header_field_byte_orders() -> None:
    job = Job.from_notify(notify_params())
    header = build_header(job, b"\x01\x02", b"\x03", 0x504E86BA, 0x01020304, 0x20000000)
    assert header[0:4] == bytes.fromhex("00000020")
    assert header[4:36] == prevhash_from_notify(job.prevhash)
    assert header[68:72] == bytes.fromhex("ba864e50")
    assert header[72:76] == bytes.fromhex("ffff7f20")
    assert header[76:80] == bytes.fromhex("04030201")


def test_merkle_root_folds_the_branch_like_the_full_tree() -> None:
    txids = [sha256d(bytes([i])) for i in range(1, 6)]
    branch = merkle_branch(txids)
    job = replace(genesis_job(), merkle_branch=[h.hex() for h in branch])
    coinbase = build_coinbase(job, b"\xaa" * 4, b"\xbb" * 4)
    assert merkle_root_for(job, coinbase) == merkle_root([sha256d(coinbase), *txids])


# --- scan ---


def test_scan_finds_the_genesis_nonce() -> None:
    job = genesis_job()
    header = build_header(job, b"", b"", GENESIS_TIME, GENESIS_NONCE, 1)
    found = scan(header[:76], GENESIS_NONCE - 3000, 6000, DIFF1_TARGET)
    assert found == [(GENESIS_NONCE, sha256d(header))]
    assert hash_to_hex(found[0][1]) == GENESIS_HASH


def test_scan_same_prefix_as_header_prefix() -> None:
    job = genesis_job()
    prefix = header_prefix(job, hash_from_hex(GENESIS_MERKLE), GENESIS_TIME, 1)
    assert prefix == bytes.fromhex(GENESIS_HEADER)[:76]


def test_scan_returns_every_hash_under_the_target() -> None:
    prefix = bytes(range(76))
    target = difficulty_to_target(2**-24)  # about one hash in 256 qualifies
    found = scan(prefix, 1000, 5000, target)
    expected = [
        (n, h)
        for n in range(1000, 6000)
        if hash_to_int(h := sha256d(prefix + n.to_bytes(4, "little"))) <= target
    ]
    assert found == expected
    assert len(found) > 0
    assert len(scan(prefix, 0, 100, MAX_TARGET)) == 100


def test_scan_stops_at_the_end_of_the_nonce_space() -> None:
    found = scan(bytes(76), 2**32 - 10, 1000, MAX_TARGET)
    assert [n for n, _ in found] == list(range(2**32 - 10, 2**32))


def test_scan_rejects_a_bad_prefix() -> None:
    with pytest.raises(ValueError):
        scan(bytes(80), 0, 1, MAX_TARGET)


# --- version rolling ---


def test_roll_version_examples() -> None:
    mask = BIP320_VERSION_MASK
    assert roll_version(0x20000000, mask, 0xFFFFFFFF) == 0x3FFFE000
    assert roll_version(0x20000004, mask, 0) == 0x20000004
    assert roll_version(0x3FFFE000, mask, 0) == 0x20000000
    assert roll_version(0x20000000, mask, 0x00002000) == 0x20002000
    assert version_bits_hex(0x3FFFE004, mask) == "1fffe000"
    assert version_bits_hex(0x20002000, mask) == "00002000"


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_pool_recovers_rolled_version(job_version: int, mask: int, bits: int) -> None:
    rolled = roll_version(job_version, mask, bits)
    assert 0 <= rolled < 2**32
    # What the pool does with the submitted 6th parameter.
    submitted = int(version_bits_hex(rolled, mask), 16)
    assert (job_version & ~mask) | (submitted & mask) == rolled
    # Bits outside the mask are never touched.
    assert rolled & ~mask == job_version & ~mask


def test_spread_bits_walks_every_pattern_once() -> None:
    mask = 0b1011_0100_0000
    patterns = [spread_bits(i, mask) for i in range(mask_capacity(mask))]
    assert len(set(patterns)) == 16
    assert all(p & ~mask == 0 for p in patterns)
    assert spread_bits(0, mask) == 0
    assert spread_bits(1, mask) == 0b0100_0000
    assert spread_bits(15, mask) == mask


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_spread_bits_stays_in_mask(counter: int, mask: int) -> None:
    assert spread_bits(counter, mask) & ~mask == 0


# --- small helpers ---


def test_hashrate_from_shares() -> None:
    assert hashrate_from_shares(10, 2.0, 4.0) == 10 * 2 * 2**32 / 4
    assert hashrate_from_shares(1, 1.0, 2**32) == 1.0
    assert hashrate_from_shares(5, 1.0, 0) == 0.0


def test_u32_hex() -> None:
    assert u32_hex(GENESIS_NONCE) == "7c2bac1d"
    assert u32_hex(1) == "00000001"
