"""extranonce1 allocation (uniqueness, prefix, resume window) and per-IP defences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashquarry.stratum.defences import BanRules, Defences
from hashquarry.stratum.extranonce import ExtranonceAllocator

# -- ExtranonceAllocator --------------------------------------------------------------------


def test_allocations_are_unique_four_bytes_with_prefix() -> None:
    alloc = ExtranonceAllocator(prefix=0xA7)
    seen = {alloc.allocate(0.0) for _ in range(5000)}
    assert len(seen) == 5000
    assert all(len(e) == 4 and e[0] == 0xA7 for e in seen)
    assert bytes([0xA7, 0, 0, 0]) not in seen  # value 0 is never handed out
    assert alloc.in_use == 5000


@given(prefix=st.integers(0, 255))
def test_prefix_byte_separates_front_ends(prefix: int) -> None:
    a = ExtranonceAllocator(prefix=prefix)
    b = ExtranonceAllocator(prefix=(prefix + 1) % 256)
    xs = {a.allocate(0.0) for _ in range(50)}
    ys = {b.allocate(0.0) for _ in range(50)}
    assert not xs & ys
    assert {x[0] for x in xs} == {prefix}


@pytest.mark.parametrize("prefix", [-1, 256])
def test_prefix_must_be_one_byte(prefix: int) -> None:
    with pytest.raises(ValueError, match="one byte"):
        ExtranonceAllocator(prefix=prefix)


def test_release_frees_and_parks() -> None:
    alloc = ExtranonceAllocator(prefix=1, resume_seconds=600.0)
    a = alloc.allocate(0.0)
    b = alloc.allocate(0.0)
    assert alloc.in_use == 2
    alloc.release(a, 10.0)
    assert alloc.in_use == 1
    alloc.release(a, 11.0)  # a second release is harmless
    assert alloc.in_use == 1
    # Parked for its owner: nobody else gets it inside the window.
    others = {alloc.allocate(20.0) for _ in range(100)}
    assert a not in others and b not in others


def test_resume_within_window_returns_same_extranonce1() -> None:
    alloc = ExtranonceAllocator(prefix=1, resume_seconds=600.0)
    a = alloc.allocate(0.0)
    alloc.release(a, 100.0)
    assert alloc.allocate(699.0, resume=a.hex()) == a
    assert alloc.in_use == 1
    # Resuming twice does not give the same value to two sessions.
    assert alloc.allocate(699.5, resume=a.hex()) != a


def test_resume_window_expires() -> None:
    alloc = ExtranonceAllocator(prefix=1, resume_seconds=600.0)
    a = alloc.allocate(0.0)
    alloc.release(a, 100.0)
    again = alloc.allocate(700.0, resume=a.hex())  # exactly resume_seconds later
    assert again != a


@pytest.mark.parametrize("resume", ["zz", "0100", "02000001", "", "01000001ff"])
def test_resume_with_foreign_or_malformed_id_gets_fresh_value(resume: str) -> None:
    alloc = ExtranonceAllocator(prefix=1)
    first = alloc.allocate(0.0)
    assert first == bytes.fromhex("01000001")
    alloc.release(first, 1.0)
    fresh = alloc.allocate(2.0, resume=resume)
    assert fresh != first and fresh[0] == 1


def test_resume_of_in_use_id_is_not_shared() -> None:
    alloc = ExtranonceAllocator(prefix=1)
    a = alloc.allocate(0.0)
    assert alloc.allocate(1.0, resume=a.hex()) != a


def test_zero_resume_window_parks_nothing() -> None:
    alloc = ExtranonceAllocator(prefix=1, resume_seconds=0.0)
    a = alloc.allocate(0.0)
    alloc.release(a, 1.0)
    assert alloc.in_use == 0
    assert alloc.allocate(2.0, resume=a.hex()) != a  # not parked, so not resumable


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=200))
def test_live_extranonces_never_collide(ops: list[tuple[bool, int]]) -> None:
    alloc = ExtranonceAllocator(prefix=3, resume_seconds=5.0)
    live: list[bytes] = []
    now = 0.0
    for allocate, pick in ops:
        now += 1.0
        if allocate or not live:
            resume = live[pick % len(live)].hex() if live and pick % 3 == 0 else None
            live.append(alloc.allocate(now, resume))
        else:
            alloc.release(live.pop(pick % len(live)), now)
        assert len(set(live)) == len(live)
        assert alloc.in_use == len(live)


# -- Defences -------------------------------------------------------------------------------

IP = "198.51.100.4"


def test_ban_needs_min_count_then_ratio() -> None:
    d = Defences(BanRules(min_count=10, invalid_ratio=0.5, ban_seconds=600.0))
    for _ in range(9):
        assert d.judge(IP, True, 0.0) is False  # all bad, but too few to judge
    assert not d.is_banned(IP, 0.0)
    assert d.judge(IP, True, 0.0) is True  # the 10th
    assert d.is_banned(IP, 0.0)
    assert d.is_banned(IP, 599.9)


def test_mostly_good_ip_is_not_banned() -> None:
    d = Defences(BanRules(min_count=10, invalid_ratio=0.5))
    for i in range(1000):
        assert d.judge(IP, i % 3 == 0, float(i)) is False  # a third bad: under the ratio
    assert not d.is_banned(IP, 1000.0)


def test_ban_at_exact_ratio() -> None:
    d = Defences(BanRules(min_count=10, invalid_ratio=0.5))
    results = [d.judge(IP, i % 2 == 1, 0.0) for i in range(10)]
    assert results == [False] * 9 + [True]  # 5 bad out of 10 is the ratio


def test_ban_expires_and_admit_reports_it() -> None:
    d = Defences(BanRules(min_count=2, invalid_ratio=0.5, ban_seconds=600.0))
    d.judge(IP, True, 100.0)
    assert d.judge(IP, True, 100.0)
    reason = d.admit(IP, 200.0)
    assert reason is not None and "banned" in reason and "500" in reason
    assert d.is_banned(IP, 699.0)
    assert not d.is_banned(IP, 700.0)
    assert d.admit(IP, 700.0) is None
    # The slate is clean after a ban: one bad message does not re-ban at once.
    assert d.judge(IP, True, 701.0) is False


def test_explicit_ban_and_other_ips_unaffected() -> None:
    d = Defences(BanRules(ban_seconds=60.0))
    d.ban(IP, 0.0)
    assert d.is_banned(IP, 30.0)
    assert d.admit(IP, 30.0) is not None
    assert d.admit("203.0.113.9", 30.0) is None
    assert not d.is_banned("203.0.113.9", 30.0)


def test_old_clean_record_cannot_hide_a_flood() -> None:
    rules = BanRules(min_count=20, invalid_ratio=0.5)
    d = Defences(rules)
    for i in range(100_000):
        d.judge(IP, False, float(i))
    for n in range(1, 10 * rules.min_count + 1):
        if d.judge(IP, True, 1e5 + n):
            break
    else:
        pytest.fail("a flood after a long clean history was never banned")
    assert d.is_banned(IP, 1e5 + n)


def test_per_ip_connection_cap_admit_release() -> None:
    d = Defences(BanRules(max_connections_per_ip=3))
    assert [d.admit(IP, 0.0) for _ in range(3)] == [None, None, None]
    refusal = d.admit(IP, 0.0)
    assert refusal is not None and "too many connections" in refusal and "3" in refusal
    assert d.admit("203.0.113.9", 0.0) is None  # per IP, not global
    d.release(IP)
    assert d.admit(IP, 0.0) is None
    assert d.admit(IP, 0.0) is not None
    for _ in range(10):
        d.release(IP)  # never below zero
    admits = [d.admit(IP, 0.0) for _ in range(4)]
    assert admits[:3] == [None, None, None] and admits[3] is not None


def test_sweep_keeps_bans_and_live_connections() -> None:
    d = Defences(BanRules(min_count=5, ban_seconds=60.0, max_connections_per_ip=1))
    d.admit("192.0.2.1", 0.0)
    d.release("192.0.2.1")
    d.ban("192.0.2.2", 0.0)
    assert d.admit("192.0.2.3", 0.0) is None
    d.sweep(10.0)
    assert d.admit("192.0.2.1", 10.0) is None
    assert d.is_banned("192.0.2.2", 10.0)  # a live ban survives a sweep
    assert d.admit("192.0.2.3", 10.0) is not None  # its open connection is still counted
