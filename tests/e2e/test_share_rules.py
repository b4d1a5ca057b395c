"""Share rules over real TCP against a pool on a real node: stale, duplicate, low difficulty,
extranonce changes."""

from __future__ import annotations

import asyncio

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.chain.target import difficulty_to_target
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool

from .helpers import connect, find_share, wait_for

pytestmark = pytest.mark.e2e


async def test_share_for_a_job_before_a_new_block_is_stale(
    regtest: RegtestNode, regtest_pool: Pool
) -> None:
    client = await connect(regtest_pool.ports[0], "alice.stale")
    try:
        old = client.job
        assert old is not None
        share = find_share(old, old.share_target)
        # A block from elsewhere: the node mines it, the pool hears it over ZMQ.
        await asyncio.to_thread(regtest.mine, 1)
        new = await asyncio.wait_for(client.wait_job(old), 10)
        assert new.clean and new.prevhash != old.prevhash
        res = await client.submit(
            "alice.stale", share.job_id, share.extranonce2, share.ntime, share.nonce
        )
        assert not res.accepted
        assert res.error_code == 21
        assert "stale" in (res.error_message or "")
    finally:
        await client.close()


async def test_duplicate_and_low_difficulty(difficulty1: RegtestNode, d1_pool: Pool) -> None:
    # On the difficulty-1 network a share at difficulty 0.0002 is not a block, so the job
    # stays current and the same share can be sent twice.
    client = await connect(d1_pool.ports[0], "bob.dup")
    try:
        job = client.job
        assert job is not None
        share = find_share(job, job.share_target)
        first = await client.submit(
            "bob.dup", share.job_id, share.extranonce2, share.ntime, share.nonce
        )
        assert first.accepted, first
        again = await client.submit(
            "bob.dup", share.job_id, share.extranonce2, share.ntime, share.nonce
        )
        assert (again.accepted, again.error_code) == (False, 22)

        high = find_share(job, job.share_target, extranonce2=1, meet=False)
        low = await client.submit("bob.dup", high.job_id, high.extranonce2, high.ntime, high.nonce)
        assert (low.accepted, low.error_code) == (False, 23)

        unknown = await client.submit(
            "bob.dup", "ffffff", share.extranonce2, share.ntime, share.nonce
        )
        assert (unknown.accepted, unknown.error_code) == (False, 21)
        stranger = await client.submit(
            "mallory.x", share.job_id, share.extranonce2, share.ntime, share.nonce
        )
        assert (stranger.accepted, stranger.error_code) == (False, 24)
    finally:
        await client.close()
    results = d1_pool.stats.rejected_by
    assert results["duplicate"] >= 1 and results["low_difficulty"] >= 1


async def test_fixed_difficulty_from_password(difficulty1: RegtestNode, d1_pool: Pool) -> None:
    client = await connect(d1_pool.ports[0], "bob.fixed", password="d=0.0004")
    try:
        assert client.job is not None
        assert client.job.difficulty == pytest.approx(0.0004)
        share = find_share(client.job, difficulty_to_target(0.0004))
        res = await client.submit(
            "bob.fixed", share.job_id, share.extranonce2, share.ntime, share.nonce
        )
        assert res.accepted
    finally:
        await client.close()


async def test_extranonce_subscriber_gets_set_extranonce_and_keeps_mining(
    difficulty1: RegtestNode, d1_pool: Pool
) -> None:
    pool = d1_pool
    url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
    stop = asyncio.Event()
    task = asyncio.create_task(run_miner(MinerOptions(url=url, users=["erin.en"]), stop=stop))
    try:
        await wait_for(lambda: pool.stats.accepted >= 3, 60, "shares before the change")
        sessions = [c.session for c in pool.server.connections if c.session and c.session.ready]
        assert len(sessions) == 1 and sessions[0].extranonce_subscribed
        before = sessions[0].extranonce1
        assert pool.server.rotate_extranonce() == 1
        after_rotation = pool.stats.accepted
        # Shares with the new extranonce1 are accepted: the old one would not validate on
        # jobs issued after the change, so accepted shares prove the miner followed it.
        await wait_for(
            lambda: pool.stats.accepted >= after_rotation + 3, 60, "shares after the change"
        )
        assert sessions[0].extranonce1 != before
        issued = sessions[0].issued[pool.jobs.current.job_id]  # type: ignore[union-attr]
        assert issued[1] == sessions[0].extranonce1
    finally:
        stop.set()
    result = await asyncio.wait_for(task, 30)
    assert result["shares_rejected"] == 0, result


async def test_session_resume_keeps_extranonce1(difficulty1: RegtestNode, d1_pool: Pool) -> None:
    first = await connect(d1_pool.ports[0], "frank.resume")
    sid = first.session_id
    en1 = first.extranonce1
    await first.close()
    await asyncio.sleep(0.2)
    from hashquarry.miner.client import StratumClient

    second = StratumClient()
    await second.connect("127.0.0.1", d1_pool.ports[0])
    try:
        _, _, new_sid = await second.subscribe(session_id=sid)
        assert new_sid == sid
        assert second.extranonce1 == en1
    finally:
        await second.close()
