"""Share validation (pure): field-naming format errors, header rules, and the block it builds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pytest

from hashquarry.chain.encoding import read_bip34_height, read_varint
from hashquarry.chain.hashing import merkle_root, sha256d
from hashquarry.chain.target import difficulty_to_target
from hashquarry.chain.template import Template
from hashquarry.shares.events import ErrorCode, ShareResult
from hashquarry.shares.validate import (
    MAX_FUTURE_NTIME,
    Submission,
    Verdict,
    block_bytes,
    validate_share,
)
from hashquarry.stratum.jobs import Job

if TYPE_CHECKING:
    from .conftest import Kit

EN1 = bytes.fromhex("01000007")
SHARE_TARGET = difficulty_to_target(1e-6)
MASK = 0x1FFFE000


def make_job(kit: Kit, **gbt: Any) -> Job:
    return kit.job_manager().new_template(kit.template(**gbt), kit.NOW)


def judge(
    kit: Kit,
    job: Job | None,
    sub: Submission,
    *,
    current_block: bool = True,
    latest: Template | Literal["job"] | None = "job",
    share_target: int = SHARE_TARGET,
    version_mask: int = 0,
    now: float | None = None,
) -> Verdict:
    return validate_share(
        sub,
        job,
        current_block=current_block,
        latest_template=(job.template if job else None) if latest == "job" else latest,
        extranonce1=EN1,
        extranonce2_size=kit.EN2_SIZE,
        share_target=share_target,
        version_mask=version_mask,
        now=kit.NOW if now is None else now,
    )


def good_sub(kit: Kit, job: Job, *, en2: int = 0, ntime: int | None = None) -> Submission:
    e2 = kit.extranonce2(en2)
    t = kit.CURTIME if ntime is None else ntime
    nonce, _ = kit.find_nonce(job, EN1 + e2, t, SHARE_TARGET)
    return Submission("alice.rig1", job.job_id, e2.hex(), f"{t:08x}", f"{nonce:08x}")


# -- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extranonce2", "ntime", "nonce", "version_bits", "expected"),
    [
        ("000000", "6553f100", "00000000", None, "extranonce2 must be 8 hex characters, got 6"),
        ("0000000000", "6553f100", "00000000", None, "extranonce2 must be 8 hex characters"),
        ("zz00zz00", "6553f100", "00000000", None, "extranonce2 is not hex"),
        ("00000000", "6553f1", "00000000", None, "ntime must be 8 hex characters, got 6"),
        ("00000000", "6553f1000", "00000000", None, "ntime must be 8 hex characters"),
        ("00000000", "6553f10g", "00000000", None, "ntime is not hex"),
        ("00000000", "6553f100", "xyz12345", None, "nonce is not hex"),
        ("00000000", "6553f100", "0000000", None, "nonce must be 8 hex characters, got 7"),
        ("00000000", "6553f100", "00000000", "2000", "version_bits must be 8 hex characters"),
        ("00000000", "6553f100", "00000000", "0000200z", "version_bits is not hex"),
        ("00000000", "6553f100", "0x000000", None, "nonce is not hex"),
    ],
)
def test_format_errors_name_the_field(
    kit: Kit, extranonce2: str, ntime: str, nonce: str, version_bits: str | None, expected: str
) -> None:
    job = make_job(kit)
    sub = Submission("alice.rig1", job.job_id, extranonce2, ntime, nonce, version_bits)
    v = judge(kit, job, sub, version_mask=MASK)
    assert v.result is ShareResult.INVALID
    assert v.code == ErrorCode.OTHER
    assert expected in v.reason
    assert v.hash is None and not v.accepted
    # Format is judged before the job: a garbage share for a vanished job is still error 20.
    assert judge(kit, None, sub).code == ErrorCode.OTHER


def test_missing_job_and_previous_block(kit: Kit) -> None:
    job = make_job(kit)
    sub = good_sub(kit, job)
    gone = judge(kit, None, sub)
    assert (gone.result, gone.code) == (ShareResult.STALE, ErrorCode.JOB_NOT_FOUND)
    assert "not found" in gone.reason
    stale = judge(kit, job, sub, current_block=False)
    assert (stale.result, stale.code) == (ShareResult.STALE, ErrorCode.JOB_NOT_FOUND)
    assert "previous block" in stale.reason
    assert judge(kit, job, sub).accepted  # the same share on the current block counts


# -- ntime ----------------------------------------------------------------------------------


def test_ntime_before_mintime_rejected(kit: Kit) -> None:
    job = make_job(kit, mintime=kit.CURTIME - 100)
    at_min = judge(kit, job, good_sub(kit, job, ntime=kit.CURTIME - 100))
    assert at_min.accepted, at_min.reason
    early = judge(kit, job, good_sub(kit, job, en2=1, ntime=kit.CURTIME - 101))
    assert early.result is ShareResult.INVALID and early.code == ErrorCode.OTHER
    assert "mintime" in early.reason


def test_ntime_more_than_two_hours_ahead_rejected(kit: Kit) -> None:
    job = make_job(kit)
    now = kit.NOW
    edge = int(now) + MAX_FUTURE_NTIME
    assert MAX_FUTURE_NTIME == 7200
    assert judge(kit, job, good_sub(kit, job, ntime=edge)).accepted
    late = judge(kit, job, good_sub(kit, job, en2=1, ntime=edge + 1))
    assert late.result is ShareResult.INVALID and "future" in late.reason


# -- duplicates, targets, delayed -----------------------------------------------------------


def test_duplicate_only_after_acceptance(kit: Kit) -> None:
    job = make_job(kit)
    sub = good_sub(kit, job)
    # Judged against an impossible target first: rejected, so not remembered.
    low = judge(kit, job, sub, share_target=1)
    assert low.result is ShareResult.LOW_DIFFICULTY and low.code == ErrorCode.LOW_DIFFICULTY
    assert low.hash is not None and low.actual_difficulty > 0
    first = judge(kit, job, sub)
    assert first.accepted
    again = judge(kit, job, sub)
    assert (again.result, again.code) == (ShareResult.DUPLICATE, ErrorCode.DUPLICATE)
    # Upper-case hex of the same share is the same share.
    upper = Submission(
        sub.worker, sub.job_id, sub.extranonce2.upper(), sub.ntime.upper(), sub.nonce.upper()
    )
    assert judge(kit, job, upper).result is ShareResult.DUPLICATE


def test_accepted_verdict_fields(kit: Kit) -> None:
    job = make_job(kit)
    sub = good_sub(kit, job, en2=5)
    v = judge(kit, job, sub)
    assert v.accepted and v.code is None and v.reason == ""
    assert v.header is not None and len(v.header) == 80
    assert v.hash == sha256d(v.header)
    assert v.extranonce == EN1 + kit.extranonce2(5)
    assert int.from_bytes(v.hash, "little") <= SHARE_TARGET
    assert not v.is_block  # network difficulty 1 vs a 1e-6 share
    assert not v.delayed


def test_delayed_when_latest_template_differs(kit: Kit) -> None:
    job = make_job(kit)
    newer = kit.template(tx_seed=50)
    assert judge(kit, job, good_sub(kit, job, en2=1), latest=newer).delayed
    assert not judge(kit, job, good_sub(kit, job, en2=2), latest=None).delayed


# -- the block ------------------------------------------------------------------------------


def find_block(kit: Kit, **gbt: Any) -> tuple[Job, Verdict]:
    job = make_job(kit, bits=kit.REGTEST_BITS, **gbt)
    v = judge(kit, job, good_sub(kit, job, en2=0xABCD))
    assert v.accepted and v.is_block
    return job, v


@pytest.mark.parametrize("segwit", [False, True], ids=["legacy", "segwit"])
def test_block_bytes_parse_back(kit: Kit, segwit: bool) -> None:
    job, v = find_block(kit, segwit=segwit, n_tx=5)
    assert v.header is not None and v.extranonce is not None
    t = job.template
    block = block_bytes(job, v.header, v.extranonce)

    header = block[:80]
    assert header == v.header
    assert sha256d(header) == v.hash
    assert int.from_bytes(header[:4], "little") == t.version
    assert header[4:36] == t.prev_hash
    assert int.from_bytes(header[68:72], "little") == kit.CURTIME
    assert int.from_bytes(header[72:76], "little") == t.bits

    count, pos = read_varint(block, 80)
    assert count == 1 + len(t.transactions) == 6

    cb_start = pos
    coinbase, pos = kit.parse_tx(block, pos)
    if segwit:
        assert block[cb_start + 4 : cb_start + 6] == b"\x00\x01"  # marker and flag
        assert coinbase.witness == [[bytes(32)]]  # the witness reserved value
    else:
        assert block[cb_start + 4] == 1  # straight to the input count
        assert coinbase.witness is None
    # The txid form is what miners hash, and it is what the merkle root commits to.
    assert coinbase.stripped == job.coinbase.assemble(v.extranonce)
    txids = [coinbase.txid] + [tx.txid for tx in t.transactions]
    assert header[36:68] == merkle_root(txids)

    wtxids = [bytes(32)]
    for tx in t.transactions:
        start = pos
        parsed, pos = kit.parse_tx(block, pos)
        assert block[start:pos] == tx.data
        assert parsed.txid == tx.txid
        wtxids.append(sha256d(tx.data))
    assert pos == len(block)

    if segwit:
        # BIP 141: the commitment output holds sha256d(witness root || reserved value).
        commitment = coinbase.outputs[-1][1]
        assert commitment[:6] == kit.WITNESS_MAGIC
        assert commitment[6:] == sha256d(merkle_root(wtxids) + coinbase.witness[0][0])  # type: ignore[index]


@pytest.mark.parametrize("segwit", [False, True], ids=["legacy", "segwit"])
def test_coinbase_pays_payout_script_and_commits_witness(kit: Kit, segwit: bool) -> None:
    job, v = find_block(kit, segwit=segwit)
    assert v.header is not None and v.extranonce is not None
    block = block_bytes(job, v.header, v.extranonce)
    _, pos = read_varint(block, 80)
    coinbase, _ = kit.parse_tx(block, pos)
    t = job.template

    assert len(coinbase.inputs) == 1
    prev, vout, script_sig, _seq = coinbase.inputs[0]
    assert prev == bytes(32) and vout == 0xFFFFFFFF
    assert 2 <= len(script_sig) <= 100
    assert read_bip34_height(script_sig) == t.height
    assert v.extranonce in script_sig
    assert script_sig.endswith(b"/hq-test/")

    assert coinbase.outputs[0] == (t.coinbase_value, kit.payout_script)
    assert sum(value for value, _ in coinbase.outputs) == t.coinbase_value
    if segwit:
        assert t.witness_commitment is not None
        assert coinbase.outputs[1:] == [(0, t.witness_commitment)]
    else:
        assert len(coinbase.outputs) == 1
    assert coinbase.locktime == 0


@pytest.mark.parametrize("height", [1, 16, 17, 127, 128, 500, 65535, 65536, 8388608])
def test_bip34_height_read_from_block_coinbase(kit: Kit, height: int) -> None:
    job, v = find_block(kit, height=height)
    assert v.header is not None and v.extranonce is not None
    block = block_bytes(job, v.header, v.extranonce)
    _, pos = read_varint(block, 80)
    coinbase, _ = kit.parse_tx(block, pos)
    assert read_bip34_height(coinbase.inputs[0][2]) == height


def test_block_solution_above_share_target_is_not_lost(kit: Kit) -> None:
    job = make_job(kit, bits=kit.REGTEST_BITS)
    share_target = difficulty_to_target(1e-3)  # far harder than regtest's network target
    assert share_target < job.template.target
    e2 = kit.extranonce2(1)
    # A hash meeting the network target but not the share target (about half of all hashes).
    nonce, digest = kit.find_nonce(job, EN1 + e2, kit.CURTIME, job.template.target)
    assert share_target < int.from_bytes(digest, "little") <= job.template.target
    sub = Submission("alice.rig1", job.job_id, e2.hex(), f"{kit.CURTIME:08x}", f"{nonce:08x}")
    v = judge(kit, job, sub, share_target=share_target)
    assert v.is_block, v
