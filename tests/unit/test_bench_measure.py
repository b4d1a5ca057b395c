"""The bench's pure parts: percentiles, /proc parsing, precomputed shares, static template."""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from hashquarry.bench.measure import (
    ProcessGone,
    parse_schedstat,
    parse_stat,
    parse_status_rss_kib,
    percentile,
    process_tree,
    read_rss_kib,
    read_stat,
    runqueue_wait_seconds,
    sample_tree,
    self_cpu_seconds,
    summarize,
)
from hashquarry.bench.shareconn import error_code, handshake
from hashquarry.bench.shares import ShareMaker, expected_hashes, submit_line
from hashquarry.bench.template import branch_length, static_template
from hashquarry.bench.watch import SCM_TIMESTAMPNS, kernel_stamp
from hashquarry.chain.coinbase import serialize_header
from hashquarry.chain.hashing import merkle_root_from_branch, sha256d
from hashquarry.chain.target import difficulty_to_target
from hashquarry.chain.template import parse_template
from hashquarry.miner.work import Job as MinerJob
from hashquarry.stratum.vardiff import VardiffRules

if TYPE_CHECKING:
    from .conftest import Kit

# --- percentiles -----------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    data = list(range(1, 101))  # 1..100
    assert percentile(data, 50) == 50
    assert percentile(data, 99) == 99
    assert percentile(data, 100) == 100
    assert percentile(data, 0) == 1
    assert percentile([7.0], 99) == 7.0
    # Never interpolated: always one of the values.
    assert percentile([1, 10], 50) == 1
    assert percentile([1, 10], 51) == 10


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize() -> None:
    s = summarize([5, 1, 3, 2, 4])
    assert s == {"count": 5, "min": 1, "p50": 3, "p90": 5, "p99": 5, "max": 5, "mean": 3}
    assert summarize([]) == {"count": 0}


# --- /proc -----------------------------------------------------------------------


def test_parse_stat_with_awkward_command_name() -> None:
    # A command name may contain spaces and ')' itself; fields follow the last ')'.
    # state, ppid, pgrp, session, then 7 more before utime (field 14).
    fields = ["S", "1", "2", "3"] + ["0"] * 7 + ["150", "25", "7", "3"] + ["0"] * 30
    st = parse_stat("4242 (a (b) c) " + " ".join(fields))
    assert (st.pid, st.comm, st.state, st.ppid) == (4242, "a (b) c", "S", 1)
    assert (st.utime, st.stime, st.cutime, st.cstime) == (150, 25, 7, 3)
    assert st.cpu_seconds == pytest.approx(185 / os.sysconf("SC_CLK_TCK"))


def test_read_stat_of_this_process_tracks_cpu() -> None:
    me = os.getpid()
    st = read_stat(me)
    assert st.pid == me and st.ppid == os.getppid()
    before = st.cpu_seconds
    deadline = time.process_time() + 0.15
    while time.process_time() < deadline:  # burn some CPU
        sha256d(b"x")
    st_after = read_stat(me)
    after = st_after.cpu_seconds
    assert after - before >= 0.05
    # cpu_seconds also counts waited-for children (cutime/cstime); compare our own part.
    own = (st_after.utime + st_after.stime) / os.sysconf("SC_CLK_TCK")
    assert abs(own - self_cpu_seconds()) < 0.1


def test_rss_of_this_process() -> None:
    with open(f"/proc/{os.getpid()}/status") as f:
        text = f.read()
    rss = parse_status_rss_kib(text)
    assert rss > 1024  # a Python process is more than 1 MiB
    assert abs(read_rss_kib(os.getpid()) - rss) < 64 * 1024
    assert parse_status_rss_kib("Name:\tzombie\nState:\tZ (zombie)\n") == 0


def test_schedstat() -> None:
    assert parse_schedstat("583788 63084 1\n") == (583788, 63084)
    wait = runqueue_wait_seconds(os.getpid())
    assert 0 <= wait < 3600
    assert sample_tree(os.getpid()).wait_seconds >= wait


def test_process_tree_includes_children() -> None:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        sample = sample_tree(os.getpid())
        assert child.pid in sample.pids
        assert sample.rss_kib > read_rss_kib(os.getpid())
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessGone):
        read_stat(child.pid)


# --- shares ----------------------------------------------------------------------


def _session_job(kit: Kit, difficulty: float, n_tx: int = 3) -> tuple[Any, Any, MinerJob]:
    """A real pool session and the job it announced, as the load generator parses it."""
    ctx = kit.ctx(rules=VardiffRules(min_difficulty=1e-10), n_tx=n_tx)
    session, auth = kit.session(ctx, password=f"d={difficulty:g}")
    msgs = kit.messages(auth.out)
    set_diff = next(m for m in msgs if m.get("method") == "mining.set_difficulty")
    notify = next(m for m in msgs if m.get("method") == "mining.notify")
    assert set_diff["params"][0] == difficulty
    job = MinerJob.from_notify(notify["params"])
    job = MinerJob(
        **{**job.__dict__, "difficulty": difficulty, "extranonce1": session.extranonce1,
           "extranonce2_size": kit.EN2_SIZE},
    )  # fmt: skip
    return ctx, session, job


@pytest.mark.parametrize("difficulty", [1e-6, 1e-9])
def test_precomputed_shares_really_meet_the_target(kit: Kit, difficulty: float) -> None:
    ctx, session, job = _session_job(kit, difficulty)
    target = difficulty_to_target(difficulty)
    maker = ShareMaker(job, session.extranonce1, target)
    shares = maker.make(3 if difficulty > 1e-8 else 200)
    template = ctx.jobs.current.template
    seen = set()
    for share in shares:
        # Rebuilt independently of miner.work, from the pool's own coinbase and template.
        en2 = bytes.fromhex(share.extranonce2)
        coinbase = ctx.jobs.current.coinbase.assemble(session.extranonce1 + en2)
        merkle = merkle_root_from_branch(sha256d(coinbase), template.branch)
        header = serialize_header(
            template.version, template.prev_hash, merkle, int(share.ntime, 16), template.bits,
            int(share.nonce, 16),
        )  # fmt: skip
        digest = sha256d(header)
        assert digest == share.hash
        assert int.from_bytes(digest, "little") <= target
        seen.add((share.extranonce2, share.nonce))
    assert len(seen) == len(shares), "every share is unique"
    # Hashing work is about what the difficulty implies (generous bounds: it is random).
    assert maker.hashes < 20 * expected_hashes(target) * len(shares)


def test_the_pool_accepts_precomputed_shares(kit: Kit) -> None:
    _, session, job = _session_job(kit, 1e-9, n_tx=2100)
    assert len(job.merkle_branch) == 12
    maker = ShareMaker(job, session.extranonce1, difficulty_to_target(1e-9))
    for i, share in enumerate(maker.make(50)):
        out = session.handle_line(submit_line(100 + i, "alice.rig1", share).rstrip(), kit.NOW)
        reply = kit.messages(out.out)[0]
        assert reply == {"id": 100 + i, "result": True, "error": None}, reply


def test_block_target_shares(kit: Kit) -> None:
    _, session, job = _session_job(kit, 1e-9)
    maker = ShareMaker(job, session.extranonce1, difficulty_to_target(1e-9))
    harder = difficulty_to_target(1e-7)
    (share,) = maker.make(1, target=harder)
    assert share.hash_value <= harder
    assert share.block_hash_hex == share.hash[::-1].hex()


def test_extranonce2_rolls_when_the_nonce_space_runs_out(kit: Kit) -> None:
    _, session, job = _session_job(kit, 1e-9)
    maker = ShareMaker(job, session.extranonce1, difficulty_to_target(1e-9))
    maker.next_nonce = (1 << 32) - 3
    shares = maker.make(5)
    assert maker.extranonce2 == 1
    assert shares[-1].extranonce2 == "00000001"
    assert len({(s.extranonce2, s.nonce) for s in shares}) == 5


# --- loadgen and watch helpers ---------------------------------------------------


def test_handshake_and_error_codes() -> None:
    lines = handshake("bench.w1", "d=1e-09").splitlines()
    sub, auth = (orjson.loads(x) for x in lines)
    assert sub["method"] == "mining.subscribe" and auth["params"] == ["bench.w1", "d=1e-09"]
    assert error_code([21, "job not found", None]) == 21
    assert error_code({"code": 23, "message": "low"}) == 23
    assert error_code(None) is None


def test_kernel_receive_timestamp_on_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        peer, _ = srv.accept()
        with client, peer:
            from hashquarry.bench.watch import SO_TIMESTAMPNS

            client.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            # The kernel switches receive timestamps on for the system with a little delay
            # the first time any socket asks for them.
            time.sleep(0.2)
            before = time.time_ns()
            peer.send(b"hello\n")
            time.sleep(0.05)
            data, anc, _, _ = client.recvmsg(64, socket.CMSG_SPACE(16))
            stamp = kernel_stamp(anc)
    assert data == b"hello\n"
    # Taken when the bytes arrived, not 50 ms later when they were read.
    assert before <= stamp < before + 25_000_000
    fake = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, struct.pack("qq", 5, 7))]
    assert kernel_stamp(fake) == 5_000_000_007
    assert kernel_stamp([]) == 0


# --- static template -------------------------------------------------------------


def test_static_template_has_real_transactions_and_a_12_level_branch(kit: Kit) -> None:
    gbt = static_template(4000, prev_hash="11" * 32, height=7, curtime=1_700_000_000)
    template = parse_template(orjson.loads(orjson.dumps(gbt)))
    assert len(template.branch) == branch_length(4000) == 12
    assert template.bits == 0x1D00FFFF
    assert template.target == 0xFFFF << 208
    assert template.height == 7 and template.prev_hash == bytes.fromhex("11" * 32)[::-1]
    assert len({tx.txid for tx in template.transactions}) == 4000
    for tx in template.transactions[:50] + template.transactions[-50:]:
        parsed, end = kit.parse_tx(tx.data)
        assert end == len(tx.data), "varints and lengths add up to the whole transaction"
        assert parsed.txid == tx.txid == sha256d(tx.data)
        assert len(parsed.outputs) == 2
    assert gbt["coinbasevalue"] == 50 * 100_000_000 + sum(t["fee"] for t in gbt["transactions"])
    assert branch_length(2047) == 11 and branch_length(2048) == 12
