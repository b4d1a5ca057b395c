"""The sans-IO Stratum session: protocol replies, difficulty announcements, the share flow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from hashquarry.chain.coinbase import serialize_header
from hashquarry.chain.hashing import merkle_root_from_branch, sha256d
from hashquarry.chain.target import difficulty_to_target
from hashquarry.shares.events import ErrorCode, ShareResult
from hashquarry.stratum.jobs import Job
from hashquarry.stratum.session import Outcome, PoolContext, Session
from hashquarry.stratum.vardiff import VardiffRules

if TYPE_CHECKING:
    from .conftest import Kit

SHARE_DIFF = 1e-6
SHARE_TARGET = difficulty_to_target(SHARE_DIFF)


def only(outcome: Outcome, kit: Kit) -> dict[str, Any]:
    msgs = kit.messages(outcome.out)
    assert len(msgs) == 1, msgs
    return msgs[0]


def methods(blob: bytes, kit: Kit) -> list[str]:
    return [m.get("method", "<reply>") for m in kit.messages(blob)]


def submit_valid(
    kit: Kit,
    s: Session,
    job: Job,
    *,
    en2: int = 0,
    extranonce1: bytes | None = None,
    msg_id: int = 10,
    worker: str = "alice.rig1",
    now: float | None = None,
    target: int = SHARE_TARGET,
) -> tuple[Outcome, bytes, int]:
    """Mine a share meeting `target` for `job` and submit it; (outcome, digest, nonce)."""
    en1 = s.extranonce1 if extranonce1 is None else extranonce1
    e2 = kit.extranonce2(en2)
    nonce, digest = kit.find_nonce(job, en1 + e2, kit.CURTIME, target)
    line = kit.submit_line(msg_id, worker, job.job_id, e2, kit.CURTIME, nonce)
    return s.handle_line(line, kit.NOW + 5 if now is None else now), digest, nonce


def assert_error(outcome: Outcome, kit: Kit, code: int, text: str | None = None) -> str:
    msg = only(outcome, kit)
    assert msg["error"] is not None, msg
    assert msg["error"][0] == code, msg
    if text is not None:
        assert text in msg["error"][1], msg
    return str(msg["error"][1])


# -- subscribe / resume -------------------------------------------------------------------


def test_subscribe_result_shape(kit: Kit) -> None:
    ctx = kit.ctx()
    s = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(kit.request(1, "mining.subscribe", ["bmminer/2.0"]), kit.NOW)
    msg = only(out, kit)  # not authorized yet: no work
    assert msg["id"] == 1 and msg["error"] is None
    subs, sid, en2_size = msg["result"]
    assert subs == [["mining.set_difficulty", sid], ["mining.notify", sid]]
    assert isinstance(sid, str) and len(sid) == 8
    assert bytes.fromhex(sid) == s.extranonce1
    assert s.extranonce1[0] == 0x01  # the allocator's prefix byte
    assert en2_size == kit.EN2_SIZE
    assert s.user_agent == "bmminer/2.0"
    assert not out.bad and out.close is None

    other = Session(ctx, "192.0.2.2", 1e-6, kit.NOW)
    other.handle_line(kit.request(1, "mining.subscribe", []), kit.NOW)
    assert other.extranonce1 != s.extranonce1


def test_subscribe_after_authorize_sends_first_work(kit: Kit) -> None:
    ctx = kit.ctx()
    s = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    s.handle_line(kit.request(1, "mining.authorize", ["alice.rig1", "x"]), kit.NOW)
    out = s.handle_line(kit.request(2, "mining.subscribe", []), kit.NOW)
    assert methods(b"".join(out.out), kit) == [
        "<reply>",
        "mining.set_difficulty",
        "mining.notify",
    ]


def test_resume_with_previous_session_id_gets_same_extranonce1(kit: Kit) -> None:
    ctx = kit.ctx()
    first = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    sid = only(first.handle_line(kit.request(1, "mining.subscribe", ["ua"]), kit.NOW), kit)[
        "result"
    ][1]
    ctx.extranonces.release(first.extranonce1, kit.NOW + 1)

    # Someone else connecting meanwhile must not be handed the parked id.
    stranger = Session(ctx, "192.0.2.9", 1e-6, kit.NOW + 2)
    stranger.handle_line(kit.request(1, "mining.subscribe", ["ua"]), kit.NOW + 2)
    assert stranger.extranonce1 != first.extranonce1

    again = Session(ctx, "192.0.2.1", 1e-6, kit.NOW + 30)
    msg = only(
        again.handle_line(kit.request(1, "mining.subscribe", ["ua", sid]), kit.NOW + 30), kit
    )
    assert msg["result"][1] == sid
    assert again.extranonce1 == first.extranonce1


def test_resume_of_an_id_still_in_use_gets_a_fresh_one(kit: Kit) -> None:
    ctx = kit.ctx()
    first = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    first.handle_line(kit.request(1, "mining.subscribe", []), kit.NOW)
    thief = Session(ctx, "192.0.2.66", 1e-6, kit.NOW)
    thief.handle_line(kit.request(1, "mining.subscribe", ["ua", first.session_id]), kit.NOW)
    assert thief.extranonce1 != first.extranonce1


# -- authorize ------------------------------------------------------------------------------


def test_authorize_account_and_worker(kit: Kit) -> None:
    s, auth = kit.session(kit.ctx(), user="alice.rig1")
    assert auth.bad is False
    assert s.workers == {"alice.rig1": ("alice", "rig1")}
    assert s.authorized and s.ready


def test_authorize_payout_address_mode(kit: Kit) -> None:
    ctx = kit.ctx()
    user = f"{kit.PAYOUT_ADDRESS}.worker_7"
    s, _ = kit.session(ctx, user=user)
    assert s.workers[user] == (kit.PAYOUT_ADDRESS, "worker_7")
    out, _, _ = submit_valid(kit, s, ctx.jobs.current, worker=user)  # type: ignore[arg-type]
    assert out.share is not None and out.share.accepted
    assert out.share.account == kit.PAYOUT_ADDRESS and out.share.worker == "worker_7"


def test_authorize_without_worker_uses_default(kit: Kit) -> None:
    s, _ = kit.session(kit.ctx(), user="alice")
    assert s.workers == {"alice": ("alice", "default")}


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("Alice.rig1", "x", "neither an account name"),
        ("alice.rig 1", "x", "worker name"),
        ("alice.r!g", "x", "worker name"),
        ("", "x", "empty"),
        ("a" * 161, "x", "160"),
        # A mainnet address on a regtest pool.
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa.w1", "x", "regtest payout address"),
        ("alice.rig1", "d=fast", "not a number"),
        ("alice.rig1", "d=-2", "positive"),
    ],
)
def test_authorize_rejects_bad_identity(kit: Kit, user: str, password: str, reason: str) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    s.handle_line(kit.request(1, "mining.subscribe", []), kit.NOW)
    out = s.handle_line(kit.request(2, "mining.authorize", [user, password]), kit.NOW)
    text = assert_error(out, kit, ErrorCode.UNAUTHORIZED, reason)
    assert text.startswith("unauthorized")
    assert only(out, kit)["result"] is False
    assert out.bad is True
    assert not s.authorized


def test_authorizer_refusal_is_reported(kit: Kit) -> None:
    ctx = kit.ctx()
    asked: list[tuple[str, str, bool]] = []

    def authorizer(account: str, worker: str, address_mode: bool) -> str | None:
        asked.append((account, worker, address_mode))
        return "account disabled" if account == "bob" else None

    ctx.authorizer = authorizer
    s = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    s.handle_line(kit.request(1, "mining.subscribe", []), kit.NOW)
    out = s.handle_line(kit.request(2, "mining.authorize", ["bob.rig", ""]), kit.NOW)
    assert_error(out, kit, ErrorCode.UNAUTHORIZED, "account disabled")
    assert out.bad and not s.authorized
    user = f"{kit.PAYOUT_ADDRESS}.r2"
    ok = s.handle_line(kit.request(3, "mining.authorize", [user, ""]), kit.NOW)
    assert kit.messages(ok.out)[0]["result"] is True
    assert asked == [("bob", "rig", False), (kit.PAYOUT_ADDRESS, "r2", True)]


# -- difficulty -----------------------------------------------------------------------------


def idle_job(kit: Kit, ctx: PoolContext, s: Session, seconds: float, seed: int) -> bytes:
    """A new template on the same block after `seconds` without any share."""
    job = ctx.jobs.new_template(kit.template(tx_seed=seed), kit.NOW + seconds)
    return s.on_job(job, kit.NOW + seconds)


def test_password_fixes_difficulty(kit: Kit) -> None:
    ctx = kit.ctx()
    s, auth = kit.session(ctx, password="d=0.5")
    msgs = kit.messages(auth.out)
    assert [m.get("method") for m in msgs] == [None, "mining.set_difficulty", "mining.notify"]
    assert msgs[1]["params"] == [0.5]
    assert s.difficulty == 0.5

    # Ten silent windows would make vardiff step down; a fixed difficulty must not move.
    for i in range(1, 11):
        blob = idle_job(kit, ctx, s, 60.0 * i + 1, seed=10 * i)
        assert methods(blob, kit) == ["mining.notify"]
    assert s.difficulty == 0.5

    # The same silence without a fixed difficulty does change it (the check above is real).
    free, _ = kit.session(ctx, start_difficulty=0.5)
    blob = idle_job(kit, ctx, free, 61.0 + 600, seed=999)
    msgs = kit.messages(blob)
    assert msgs[0]["method"] == "mining.set_difficulty" and msgs[0]["params"][0] < 0.5


def test_fixed_difficulty_ignores_a_share_flood(kit: Kit) -> None:
    rules = VardiffRules(min_difficulty=1e-9)
    target = difficulty_to_target(1e-8)

    def flood(s: Session, ctx: PoolContext) -> bytes:
        job = ctx.jobs.current
        assert job is not None
        for i in range(40):
            out, _, _ = submit_valid(
                kit, s, job, en2=i, msg_id=100 + i, target=target, now=kit.NOW + 0.1 * (i + 1)
            )
            assert out.share is not None and out.share.accepted, out.out
        return idle_job(kit, ctx, s, 5.0, seed=77)

    ctx = kit.ctx(rules=rules)
    fixed, _ = kit.session(ctx, password="d=1e-8")
    assert methods(flood(fixed, ctx), kit) == ["mining.notify"]
    assert fixed.difficulty == 1e-8

    ctx2 = kit.ctx(rules=rules)
    free, _ = kit.session(ctx2, start_difficulty=1e-8)
    msgs = kit.messages(flood(free, ctx2))
    assert msgs[0]["method"] == "mining.set_difficulty"
    assert msgs[0]["params"][0] > 1e-8


def test_set_difficulty_precedes_notify_and_only_when_it_changes(kit: Kit) -> None:
    ctx = kit.ctx()
    s, auth = kit.session(ctx)
    first = kit.messages(auth.out)
    assert [m.get("method") for m in first] == [None, "mining.set_difficulty", "mining.notify"]
    assert first[1]["params"] == [1e-6]
    assert first[2]["params"][8] is True  # a miner's first job is always clean

    blob = idle_job(kit, ctx, s, 1.0, seed=20)
    assert methods(blob, kit) == ["mining.notify"]

    reply = s.handle_line(kit.request(5, "mining.suggest_difficulty", [0.002]), kit.NOW + 2)
    assert only(reply, kit)["result"] is True
    assert s.difficulty == 1e-6  # jobs were already sent: it waits for the next one

    blob = idle_job(kit, ctx, s, 3.0, seed=30)
    assert isinstance(blob, bytes)  # one write
    msgs = kit.messages(blob)
    assert [m["method"] for m in msgs] == ["mining.set_difficulty", "mining.notify"]
    assert msgs[0]["params"] == [0.002]
    assert s.difficulty == 0.002
    assert s.issued[msgs[1]["params"][0]][0] == 0.002

    blob = idle_job(kit, ctx, s, 4.0, seed=40)
    assert methods(blob, kit) == ["mining.notify"]


def test_suggest_difficulty_before_first_job_is_the_start(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    s.handle_line(kit.request(1, "mining.subscribe", []), kit.NOW)
    reply = s.handle_line(kit.request(2, "mining.suggest_difficulty", [0.004]), kit.NOW)
    assert only(reply, kit)["result"] is True
    assert s.difficulty == 0.004
    auth = s.handle_line(kit.request(3, "mining.authorize", ["alice.rig1", ""]), kit.NOW)
    msgs = kit.messages(auth.out)
    assert msgs[1] == {"id": None, "method": "mining.set_difficulty", "params": [0.004]}


def test_suggest_difficulty_as_notification_and_bad_value(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    assert s.handle_line(kit.request(None, "mining.suggest_difficulty", [0.25]), kit.NOW).out == []
    assert s.difficulty == 0.25
    bad = s.handle_line(kit.request(4, "mining.suggest_difficulty", ["high"]), kit.NOW)
    assert_error(bad, kit, ErrorCode.OTHER, "positive number")
    assert bad.bad


def test_minimum_difficulty_raises_the_floor(kit: Kit) -> None:
    ctx = kit.ctx()
    # Before any job: it simply becomes the starting difficulty.
    s = Session(ctx, "192.0.2.1", 1e-6, kit.NOW)
    opts = {"minimum-difficulty.value": 0.01}
    out = s.handle_line(kit.request(1, "mining.configure", [["minimum-difficulty"], opts]), kit.NOW)
    assert only(out, kit)["result"] == {"minimum-difficulty": True}
    s.handle_line(kit.request(2, "mining.subscribe", []), kit.NOW)
    auth = s.handle_line(kit.request(3, "mining.authorize", ["alice.rig1", ""]), kit.NOW)
    assert kit.messages(auth.out)[1]["params"] == [0.01]

    # A suggestion below the floor is raised to it.
    s.handle_line(kit.request(4, "mining.suggest_difficulty", [0.0001]), kit.NOW + 1)
    idle_job(kit, ctx, s, 2.0, seed=5)
    assert s.difficulty == 0.01

    # Long silence: vardiff would step down, but not below the miner's minimum.
    for i in range(1, 6):
        idle_job(kit, ctx, s, 61.0 * i + 2, seed=50 + i)
        assert s.difficulty >= 0.01


def test_minimum_difficulty_after_first_job_applies_with_next_job(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    opts = {"minimum-difficulty.value": 0.5}
    s.handle_line(kit.request(7, "mining.configure", [["minimum-difficulty"], opts]), kit.NOW)
    msgs = kit.messages(idle_job(kit, ctx, s, 1.0, seed=3))
    assert msgs[0] == {"id": None, "method": "mining.set_difficulty", "params": [0.5]}
    bad = {"minimum-difficulty.value": "lots"}
    out = s.handle_line(kit.request(8, "mining.configure", [["minimum-difficulty"], bad]), kit.NOW)
    assert only(out, kit)["result"] == {"minimum-difficulty": False}


def test_minimum_difficulty_floor_does_not_resend_unchanged_difficulty(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx, start_difficulty=0.01)
    opts = {"minimum-difficulty.value": 0.01}
    s.handle_line(kit.request(7, "mining.configure", [["minimum-difficulty"], opts]), kit.NOW)
    for i in range(1, 4):
        blob = idle_job(kit, ctx, s, 61.0 * i, seed=60 + i)
        assert s.difficulty == 0.01
        assert methods(blob, kit) == ["mining.notify"], "difficulty did not change"


# -- errors ---------------------------------------------------------------------------------


def test_submit_before_subscribe(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    line = kit.submit_line(3, "alice.rig1", "1", kit.extranonce2(), kit.CURTIME, 0)
    out = s.handle_line(line, kit.NOW)
    assert_error(out, kit, ErrorCode.NOT_SUBSCRIBED)
    assert out.bad and out.share is None


def test_submit_from_unknown_worker(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    job = ctx.jobs.current
    assert job is not None
    out, _, _ = submit_valid(kit, s, job, worker="bob.rig1")
    assert_error(out, kit, ErrorCode.UNAUTHORIZED, "not authorized")
    assert out.bad and out.share is None


@pytest.mark.parametrize(
    "params",
    [
        ["alice.rig1", "1", "00000000", "6553f100", 12345],
        ["alice.rig1", "1", "00000000", "6553f100"],
        ["alice.rig1", 1, "00000000", "6553f100", "00000000"],
        ["alice.rig1", "1", "00000000", "6553f100", "00000000", 0x2000],
        [],
    ],
)
def test_submit_with_wrong_param_types(kit: Kit, params: list[Any]) -> None:
    s, _ = kit.session(kit.ctx())
    out = s.handle_line(kit.request(9, "mining.submit", params), kit.NOW)
    assert_error(out, kit, ErrorCode.OTHER)
    assert out.bad and out.share is None


def test_unknown_method_is_error_20_without_penalty(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(kit.request(4, "mining.get_transactions", ["1"]), kit.NOW)
    assert_error(out, kit, ErrorCode.OTHER, "mining.get_transactions")
    assert only(out, kit)["id"] == 4
    assert out.bad is False and out.close is None


@pytest.mark.parametrize(
    "line",
    [b'{"id": 1, "method": "mining.subscribe", "params": [', b"\xff\xfe", b"[1, 2]", b'"x"'],
)
def test_malformed_json_is_error_20_and_bad(kit: Kit, line: bytes) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(line, kit.NOW)
    msg = only(out, kit)
    assert msg["id"] is None and msg["error"][0] == ErrorCode.OTHER
    assert out.bad is True


def test_replies_to_our_own_requests_are_ignored(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(b'{"id": 7, "result": true, "error": null}', kit.NOW)
    assert out.out == [] and not out.bad


# -- configure / extranonce -----------------------------------------------------------------


def configure_mask(kit: Kit, s: Session, mask: str) -> Outcome:
    opts = {"version-rolling.mask": mask, "version-rolling.min-bit-count": 2}
    return s.handle_line(kit.request(1, "mining.configure", [["version-rolling"], opts]), kit.NOW)


def test_configure_version_rolling_mask_is_intersection(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = configure_mask(kit, s, "00fff000")
    assert only(out, kit)["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "00ffe000",
    }
    assert s.version_mask == 0x00FFE000


def test_configure_version_rolling_disjoint_and_default_masks(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    assert only(configure_mask(kit, s, "00000fff"), kit)["result"] == {
        "version-rolling": False,
        "version-rolling.mask": "00000000",
    }
    s2 = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s2.handle_line(kit.request(1, "mining.configure", [["version-rolling"], {}]), kit.NOW)
    assert only(out, kit)["result"]["version-rolling.mask"] == "1fffe000"


@pytest.mark.parametrize("mask", ["zzzzzzzz", "1ffffffff0", "-1"])
def test_configure_bad_mask_is_an_error(kit: Kit, mask: str) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = configure_mask(kit, s, mask)
    assert_error(out, kit, ErrorCode.OTHER, "version-rolling.mask")
    assert out.bad and s.version_mask == 0


def test_configure_unknown_extension_is_declined(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(kit.request(1, "mining.configure", [["subscribe-extranonce"], {}]), kit.NOW)
    assert only(out, kit)["result"] == {"subscribe-extranonce": False}


def test_extranonce_subscribe_is_acknowledged(kit: Kit) -> None:
    s = Session(kit.ctx(), "192.0.2.1", 1e-6, kit.NOW)
    out = s.handle_line(kit.request(3, "mining.extranonce.subscribe", []), kit.NOW)
    assert only(out, kit) == {"id": 3, "result": True, "error": None}
    assert s.extranonce_subscribed


def test_set_extranonce_applies_from_next_job(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    old = s.extranonce1
    job1 = ctx.jobs.current
    assert job1 is not None
    new = ctx.extranonces.allocate(kit.NOW)
    note = kit.messages(s.set_extranonce(new))
    assert note == [
        {"id": None, "method": "mining.set_extranonce", "params": [new.hex(), kit.EN2_SIZE]}
    ]
    assert s.extranonce1 == old  # not before the next notify

    # Work issued before the change is judged with the extranonce1 it was issued with...
    out, _, _ = submit_valid(kit, s, job1, en2=1, extranonce1=old, msg_id=20)
    assert out.share is not None and out.share.accepted
    # ...so the same job mined with the new extranonce1 does not hash to a valid share.
    out, _, _ = submit_valid(kit, s, job1, en2=2, extranonce1=new, msg_id=21)
    assert_error(out, kit, ErrorCode.LOW_DIFFICULTY)

    job2 = ctx.jobs.reissue(kit.NOW + 1)
    assert job2 is not None
    s.on_job(job2, kit.NOW + 1)
    assert s.extranonce1 == new
    out, _, _ = submit_valid(kit, s, job2, en2=3, extranonce1=new, msg_id=22)
    assert out.share is not None and out.share.accepted
    # And an old-job share still uses the old extranonce1 after the switch.
    out, _, _ = submit_valid(kit, s, job1, en2=4, extranonce1=old, msg_id=23)
    assert out.share is not None and out.share.accepted


# -- the share flow -------------------------------------------------------------------------


def test_accepted_share_then_duplicate(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    job = ctx.jobs.current
    assert job is not None
    out, digest, nonce = submit_valid(kit, s, job, en2=7, msg_id=42)
    assert only(out, kit) == {"id": 42, "result": True, "error": None}
    ev = out.share
    assert ev is not None
    assert ev.result is ShareResult.ACCEPTED and ev.accepted
    assert (ev.account, ev.worker) == ("alice", "rig1")
    assert ev.difficulty == SHARE_DIFF
    assert ev.hash_hex == digest[::-1].hex()
    assert ev.height == 500 and ev.job_id == job.job_id
    assert ev.network_difficulty == pytest.approx(1.0)
    assert ev.actual_difficulty >= SHARE_DIFF
    assert ev.session_id == s.session_id and ev.remote == "192.0.2.7"
    assert not ev.is_block and not ev.delayed
    assert out.block is None and not out.bad

    line = kit.submit_line(43, "alice.rig1", job.job_id, kit.extranonce2(7), kit.CURTIME, nonce)
    dup = s.handle_line(line, kit.NOW + 6)
    assert_error(dup, kit, ErrorCode.DUPLICATE, "duplicate")
    assert dup.share is not None and dup.share.result is ShareResult.DUPLICATE
    assert dup.bad


def test_share_for_previous_block_is_stale(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    old_job = ctx.jobs.current
    assert old_job is not None
    new_job = ctx.jobs.new_template(kit.template(prev=kit.PREV_B, height=501), kit.NOW + 1)
    assert new_job.clean
    s.on_job(new_job, kit.NOW + 1)
    out, _, _ = submit_valid(kit, s, old_job)
    assert_error(out, kit, ErrorCode.JOB_NOT_FOUND, "stale")
    assert out.share is not None and out.share.result is ShareResult.STALE
    assert out.bad is False  # stale shares are a normal cost of a new block


def test_stale_shares_count_toward_vardiff(kit: Kit) -> None:
    """Shares on a replaced block's job prove hashrate: a miner whose shares all went
    stale (blocks faster than it switches jobs) gets a higher difficulty, not a lower
    one that would make it submit even more stale shares."""
    rules = VardiffRules(min_difficulty=1e-9)
    target = difficulty_to_target(1e-8)

    def stale_flood(s: Session, ctx: PoolContext, old_job: Job, count: int) -> bytes:
        for i in range(count):
            out, _, _ = submit_valid(
                kit, s, old_job, en2=i, msg_id=100 + i, target=target, now=kit.NOW + 0.1 * (i + 1)
            )
            assert out.share is not None and out.share.result is ShareResult.STALE, out.out
        return idle_job(kit, ctx, s, 5.0, seed=77)

    def replaced(ctx: PoolContext, s: Session) -> Job:
        old_job = ctx.jobs.current
        assert old_job is not None
        new_job = ctx.jobs.new_template(kit.template(prev=kit.PREV_B, height=501), kit.NOW)
        s.on_job(new_job, kit.NOW)
        return old_job

    ctx = kit.ctx(rules=rules)
    free, _ = kit.session(ctx, start_difficulty=1e-8)
    msgs = kit.messages(stale_flood(free, ctx, replaced(ctx, free), 40))
    assert msgs[0]["method"] == "mining.set_difficulty"
    assert msgs[0]["params"][0] > 1e-8

    # A fixed difficulty stays fixed, stale flood or not.
    ctx2 = kit.ctx(rules=rules)
    fixed, _ = kit.session(ctx2, password="d=1e-8")
    assert methods(stale_flood(fixed, ctx2, replaced(ctx2, fixed), 40), kit) == ["mining.notify"]
    assert fixed.difficulty == 1e-8


def test_a_job_replaced_by_another_block_stays_stale_if_the_chain_comes_back(kit: Kit) -> None:
    """A reorg back to the earlier tip (invalidateblock on the new one) must not revive
    the old jobs: their duplicate sets were dropped, so a share could count twice."""
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    old_job = ctx.jobs.current
    assert old_job is not None
    out, _, _ = submit_valid(kit, s, old_job)
    assert out.share is not None and out.share.accepted
    other = ctx.jobs.new_template(kit.template(prev=kit.PREV_B, height=501), kit.NOW + 1)
    s.on_job(other, kit.NOW + 1)
    back = ctx.jobs.new_template(kit.template(prev=kit.PREV_A, height=500), kit.NOW + 2)
    assert back.clean and back.prev_hash == old_job.prev_hash
    s.on_job(back, kit.NOW + 2)
    again, _, _ = submit_valid(kit, s, old_job)
    assert_error(again, kit, ErrorCode.JOB_NOT_FOUND, "stale")
    fresh, _, _ = submit_valid(kit, s, back)
    assert fresh.share is not None and fresh.share.accepted


def test_share_for_unknown_job(kit: Kit) -> None:
    s, _ = kit.session(kit.ctx())
    line = kit.submit_line(3, "alice.rig1", "ffff", kit.extranonce2(), kit.CURTIME, 1)
    out = s.handle_line(line, kit.NOW)
    assert_error(out, kit, ErrorCode.JOB_NOT_FOUND, "not found")


def test_share_above_share_target_is_low_difficulty(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    job = ctx.jobs.current
    assert job is not None
    e2 = kit.extranonce2(1)
    nonce, digest = kit.find_nonce(job, s.extranonce1 + e2, kit.CURTIME, SHARE_TARGET, above=True)
    out = s.handle_line(
        kit.submit_line(5, "alice.rig1", job.job_id, e2, kit.CURTIME, nonce), kit.NOW
    )
    assert_error(out, kit, ErrorCode.LOW_DIFFICULTY, "low difficulty")
    assert out.share is not None and out.share.result is ShareResult.LOW_DIFFICULTY
    assert out.share.hash_hex == digest[::-1].hex()
    assert out.bad
    # A rejected share is not remembered: the right nonce for the same extranonce2 counts.
    ok, _, _ = submit_valid(kit, s, job, en2=1, msg_id=6)
    assert ok.share is not None and ok.share.accepted


def test_share_for_replaced_job_on_same_block_is_delayed(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    job1 = ctx.jobs.current
    assert job1 is not None
    job2 = ctx.jobs.new_template(kit.template(tx_seed=100, n_tx=5), kit.NOW + 1)
    assert not job2.clean
    s.on_job(job2, kit.NOW + 1)
    out, _, _ = submit_valid(kit, s, job1, en2=1)
    assert only(out, kit)["result"] is True
    assert out.share is not None and out.share.accepted and out.share.delayed
    out, _, _ = submit_valid(kit, s, job2, en2=2, msg_id=11)
    assert out.share is not None and out.share.accepted and not out.share.delayed


def test_share_meeting_network_target_is_a_block(kit: Kit) -> None:
    ctx = kit.ctx(bits=kit.REGTEST_BITS)
    s, _ = kit.session(ctx)
    job = ctx.jobs.current
    assert job is not None
    out, digest, _ = submit_valid(kit, s, job, en2=3)
    assert out.share is not None and out.share.accepted and out.share.is_block
    assert out.block is not None
    block_job, verdict = out.block
    assert block_job is job
    assert verdict.is_block and verdict.hash == digest
    assert verdict.header is not None and sha256d(verdict.header) == digest
    assert int.from_bytes(digest, "little") <= job.template.target


def rolled_share(
    kit: Kit, s: Session, job: Job, version: int, vbits: str, en2: int, msg_id: int
) -> Outcome:
    e2 = kit.extranonce2(en2)
    nonce, _ = kit.find_nonce(job, s.extranonce1 + e2, kit.CURTIME, SHARE_TARGET, version=version)
    line = kit.submit_line(msg_id, "alice.rig1", job.job_id, e2, kit.CURTIME, nonce, vbits)
    return s.handle_line(line, kit.NOW + 1)


def test_version_rolling_inside_mask_accepted_outside_rejected(kit: Kit) -> None:
    ctx = kit.ctx()
    s = Session(ctx, "192.0.2.7", 1e-6, kit.NOW)
    configure_mask(kit, s, "1fffe000")
    s.handle_line(kit.request(2, "mining.subscribe", []), kit.NOW)
    s.handle_line(kit.request(3, "mining.authorize", ["alice.rig1", ""]), kit.NOW)
    job = ctx.jobs.current
    assert job is not None
    base = job.template.version

    inside = 0x0ABCE000
    out = rolled_share(kit, s, job, (base & ~0x1FFFE000) | inside, f"{inside:08x}", 1, 30)
    assert only(out, kit)["result"] is True, out.out
    assert out.share is not None and out.share.accepted

    outside = 0x00000010
    out = rolled_share(kit, s, job, base | outside, f"{outside:08x}", 2, 31)
    assert_error(out, kit, ErrorCode.OTHER, "outside the negotiated mask")
    assert out.share is not None and out.share.result is ShareResult.INVALID


def test_version_bits_without_negotiation_are_rejected(kit: Kit) -> None:
    ctx = kit.ctx()
    s, _ = kit.session(ctx)
    job = ctx.jobs.current
    assert job is not None
    out = rolled_share(kit, s, job, job.template.version | 0x2000, "00002000", 1, 30)
    assert_error(out, kit, ErrorCode.OTHER, "outside the negotiated mask")


def test_version_bits_zero_clears_masked_template_bits(kit: Kit) -> None:
    # A template that signals a deployment on bit 13 (inside the BIP 320 range).
    ctx = kit.ctx(version=0x20002000)
    s = Session(ctx, "192.0.2.7", 1e-6, kit.NOW)
    configure_mask(kit, s, "1fffe000")
    s.handle_line(kit.request(2, "mining.subscribe", []), kit.NOW)
    s.handle_line(kit.request(3, "mining.authorize", ["alice.rig1", ""]), kit.NOW)
    job = ctx.jobs.current
    assert job is not None
    # What a BIP 310 miner (including hashquarry.miner.work.roll_version) hashes for bits 0.
    version = (job.template.version & ~0x1FFFE000) | 0
    out = rolled_share(kit, s, job, version, "00000000", 1, 30)
    assert only(out, kit)["result"] is True, out.out


def test_share_header_uses_job_merkle_and_extranonce(kit: Kit) -> None:
    """The accepted header is exactly what a miner builds from the notify fields."""
    ctx = kit.ctx(n_tx=6)
    s, auth = kit.session(ctx)
    notify = kit.messages(auth.out)[2]["params"]
    job_id, _prev, coinb1, coinb2, branch, version, nbits, ntime, _clean = notify
    job = ctx.jobs.get(job_id)
    assert job is not None
    e2 = kit.extranonce2(9)
    coinbase = bytes.fromhex(coinb1) + s.extranonce1 + e2 + bytes.fromhex(coinb2)
    merkle = merkle_root_from_branch(sha256d(coinbase), [bytes.fromhex(h) for h in branch])
    nonce, digest = kit.find_nonce(job, s.extranonce1 + e2, int(ntime, 16), SHARE_TARGET)
    header = serialize_header(
        int(version, 16), job.template.prev_hash, merkle, int(ntime, 16), int(nbits, 16), nonce
    )
    assert sha256d(header) == digest
    out = s.handle_line(
        kit.submit_line(3, "alice.rig1", job_id, e2, int(ntime, 16), nonce), kit.NOW
    )
    assert out.share is not None and out.share.accepted
    assert out.block is None


def test_share_credited_at_the_difficulty_its_job_was_issued_with(kit: Kit) -> None:
    ctx = kit.ctx(rules=VardiffRules(min_difficulty=1e-9))
    s, _ = kit.session(ctx, start_difficulty=1e-8)
    job1 = ctx.jobs.current
    assert job1 is not None
    s.handle_line(kit.request(5, "mining.suggest_difficulty", [4e-8]), kit.NOW)
    job2 = ctx.jobs.new_template(kit.template(tx_seed=7), kit.NOW + 1)
    s.on_job(job2, kit.NOW + 1)
    assert s.difficulty == 4e-8

    old, _, _ = submit_valid(kit, s, job1, en2=1, target=difficulty_to_target(1e-8))
    assert old.share is not None and old.share.accepted and old.share.difficulty == 1e-8
    new, _, _ = submit_valid(kit, s, job2, en2=2, target=difficulty_to_target(4e-8))
    assert new.share is not None and new.share.accepted and new.share.difficulty == 4e-8
    # Work for the new job is judged at the new difficulty: an old-difficulty hash fails.
    t_old, t_new = difficulty_to_target(1e-8), difficulty_to_target(4e-8)
    for n2 in range(3, 100):
        e2 = kit.extranonce2(n2)
        nonce, digest = kit.find_nonce(job2, s.extranonce1 + e2, kit.CURTIME, t_old)
        if int.from_bytes(digest, "little") > t_new:
            break
    else:
        pytest.fail("no hash between the two targets")
    line = kit.submit_line(30, "alice.rig1", job2.job_id, e2, kit.CURTIME, nonce)
    assert_error(s.handle_line(line, kit.NOW + 2), kit, ErrorCode.LOW_DIFFICULTY)
