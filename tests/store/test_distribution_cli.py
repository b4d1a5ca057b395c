"""`hashquarry distribution hashrate|revenue ...` end to end on a SQLite store (the service's
rules are tested in test_distribution_*.py; this checks the wiring, the output, the
errors naming the option to fix, and exit codes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from hashquarry.distribution.cli import distribution_app, parse_hash_rate, parse_time
from hashquarry.store import models as m
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade

from .builders import COIN
from .test_distribution_kit import D0, DAY, DAY_INCOME, HALF_RATE, make_world

POOL_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # regtest

app = typer.Typer()  # as hashquarry.cli.main mounts it
app.add_typer(distribution_app, name="distribution")


async def _prepare(url: str) -> None:
    """acme's alice, amy, ann and bolt's bob (test_distribution_kit); a settled day of an
    order alice -> amy in 2027 (service clock); alice mining 2^33 H/s now (real clock)."""
    engine = make_engine(url)
    try:
        world = await make_world(engine)
        await world.mine("alice", D0 - 600, D0 + DAY)
        await world.dist.distribute("acme", COIN, "alice", "amy", HALF_RATE, D0, D0 + DAY)
        world.clock.now = D0 + DAY + 60
        await world.settle_pps(D0 + DAY)
        await world.dist.settle(COIN, D0, D0 + DAY)
        minute = int(time.time() // 60)
        async with engine.begin() as conn:
            await conn.execute(m.account_minutes.insert(), [
                {"coin": COIN, "account": "alice", "minute": mm, "accepted": 1,
                 "accepted_diff": 120.0, "stale": 0, "stale_diff": 0.0, "invalid": 0,
                 "invalid_diff": 0.0, "delayed_diff": 0.0, "first_share": mm * 60.0,
                 "last_share": mm * 60.0, "network_difficulty": 1e6}
                for mm in range(minute - 10, minute + 1)
            ])  # fmt: skip
    finally:
        await engine.dispose()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HASHQUARRY_STORE__URL", "HASHQUARRY_POOL__NETWORK", "HASHQUARRY_POOL__COIN"):
        monkeypatch.delenv(var, raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    asyncio.run(_prepare(url))
    path = tmp_path / "hashquarry.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n'
        f'[pool]\ncoin = "bitcoin"\nnetwork = "regtest"\naddress = "{POOL_ADDRESS}"\n'
        f'[store]\nurl = "{url}"\n'
    )
    return path


def run(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["distribution", *args, "--config", str(config)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def test_hashrate_orders_from_the_command_line(config: Path) -> None:
    now = int(time.time())
    info = orjson.loads(
        run(config, "hashrate", "info", "-o", "acme", "--distributor", "alice",
            "--start-date", str(now + 60), "--end-date", str(now + 3600))
    )  # fmt: skip
    assert info["current_hash_rate"] > 8e9 and info["sold_hash_rate"] == 0
    created = orjson.loads(
        run(config, "hashrate", "create", "-o", "acme", "--distributor", "alice",
            "--recipient", "ann", "--hash-rate", "4G", "--start-date", str(now + 60),
            "--end-date", str(now + 3600))
    )  # fmt: skip
    assert (created["recipient"], created["hash_rate"], created["state"]) == (
        "ann",
        4e9,
        "pending",
    )
    assert created["end_date"] - created["start_date"] == 3540 and created["terminate_at"] == 0

    orders = orjson.loads(run(config, "hashrate", "orders", "-o", "acme", "--distributor",
                              "alice", "--json"))  # fmt: skip
    assert [(o["recipient"], o["state"]) for o in orders] == [
        ("amy", "pending"),
        ("ann", "pending"),
    ]
    table = run(config, "hashrate", "orders", "-o", "acme", "--distributor", "alice")
    assert "2027-01-15" in table and "4 GH/s" in table and "4.295 GH/s" in table

    [settled] = orjson.loads(run(config, "hashrate", "settlements", "-o", "acme",
                                 "--distributor", "alice", "--json"))  # fmt: skip
    assert settled["order"]["recipient"] == "amy" and settled["period_start"] == D0
    assert settled["income"] == DAY_INCOME // 2 and settled["distributor_income"] == DAY_INCOME
    table = run(config, "hashrate", "settlements", "-o", "acme", "--distributor", "alice")
    assert "2027-01-15" in table and str(DAY_INCOME // 2) in table

    ended = orjson.loads(run(config, "hashrate", "terminate", "-o", "acme", str(created["id"])))
    assert ended["state"] == "terminated" and ended["terminate_at"] >= now


def test_revenue_distributions_from_the_command_line(config: Path) -> None:
    added = orjson.loads(
        run(config, "revenue", "add", "-o", "acme", "--distributor", "alice", "--recipient",
            "ann", "--proportion", "0.3", "--description", "ann's cut")
    )  # fmt: skip
    assert (added["proportion"], added["description"], added["deleted_at"]) == (
        0.3,
        "ann's cut",
        None,
    )
    run(config, "revenue", "add", "-o", "acme", "--distributor", "alice", "--recipient", "amy",
        "--proportion", "0.7")  # fmt: skip
    listed = orjson.loads(run(config, "revenue", "list", "-o", "acme", "--distributor",
                              "alice", "--json"))  # fmt: skip
    assert [(r["recipient"], r["proportion"]) for r in listed] == [("ann", 0.3), ("amy", 0.7)]
    only = orjson.loads(run(config, "revenue", "info", "-o", "acme", "--distributor", "alice",
                            "--recipient", "amy", "--json"))  # fmt: skip
    assert [r["id"] for r in only] == [listed[1]["id"]]
    assert "ann's cut" in run(config, "revenue", "list", "-o", "acme", "--distributor", "alice")

    deleted = orjson.loads(run(config, "revenue", "delete", "-o", "acme", "--distributor",
                               "alice", str(added["id"])))  # fmt: skip
    assert deleted["deleted_at"] is not None
    listed = orjson.loads(run(config, "revenue", "list", "-o", "acme", "--distributor",
                              "alice", "--json"))  # fmt: skip
    assert [r["recipient"] for r in listed] == ["amy"]


def test_errors_name_the_option_and_the_reason(config: Path) -> None:
    now = int(time.time())
    window = ["--start-date", str(now + 60), "--end-date", str(now + 3600)]
    order = ["hashrate", "create", "-o", "acme", "--distributor", "alice", "--recipient", "ann"]
    err = run(config, *order, "--hash-rate", "10G", *window, code=2)
    assert err.startswith("hashquarry: --hash-rate: 1e+10 H/s would oversell 'alice'")
    err = run(config, *order, "--hash-rate", "lots", *window, code=2)
    assert err.startswith("hashquarry: --hash-rate: 'lots' is not a hashrate")
    err = run(config, *order, "--hash-rate", "1G", "--start-date", "tomorrow",
              "--end-date", str(now + 3600), code=2)  # fmt: skip
    assert "--start-date: 'tomorrow' is neither Unix seconds nor an ISO 8601 time" in err
    err = run(config, *order, "--hash-rate", "1G", "--start-date", str(now - 3600),
              "--end-date", str(now + 3600), code=2)  # fmt: skip
    assert err.startswith("hashquarry: --start-date: ") and "in the past" in err
    err = run(config, *order, "--hash-rate", "1G", "--start-date", str(now + 60),
              "--end-date", str(now), code=2)  # fmt: skip
    assert err.startswith("hashquarry: --end-date: must be later than start_date")
    err = run(config, *order[:-1], "ghost", "--hash-rate", "1G", *window, code=2)
    assert err.startswith("hashquarry: --recipient: ") and "'ghost' not found" in err
    err = run(config, *order[:-1], "bob", "--hash-rate", "1G", *window, code=2)
    assert err.startswith("hashquarry: --recipient: "), "another owner's user reads as missing"
    err = run(config, *order, "--hash-rate", "1G", *window, "--currency", "litecoin", code=2)
    assert err.startswith("hashquarry: --currency: 'litecoin' is not mined on this pool")
    err = run(config, "hashrate", "terminate", "-o", "acme", "x1", code=2)
    assert err.startswith("hashquarry: ORDER_ID: must be a positive integer id")
    err = run(config, "hashrate", "terminate", "-o", "bolt", "1", code=2)
    assert err.startswith("hashquarry: ORDER_ID: hashrate order 1 not found")
    err = run(config, "hashrate", "orders", "-o", "nobody", "--distributor", "alice", code=2)
    assert err.startswith("hashquarry: --owner: unknown owner 'nobody'")

    share = ["revenue", "add", "-o", "acme", "--distributor", "alice", "--recipient", "ann"]
    err = run(config, *share, "--proportion", "1.5", code=2)
    assert err.startswith("hashquarry: --proportion: must be greater than 0 and at most 1")
    run(config, *share, "--proportion", "0.6")
    err = run(config, *share, "--proportion", "0.5", code=2)
    assert err.startswith("hashquarry: --proportion: 0.5 would make 'alice'")
    err = run(config, *share, "--proportion", "0.1", "--recipient", "alice", code=2)
    assert err.startswith("hashquarry: --recipient: must be a different user")
    err = run(config, "revenue", "delete", "-o", "acme", "--distributor", "alice", "99", code=2)
    assert err.startswith("hashquarry: ID: revenue distribution 99 of 'alice' not found")


def test_times_and_hashrates_are_read_like_an_operator_writes_them() -> None:
    assert parse_time("1799971200", "--start-date") == D0
    assert parse_time("2027-01-15T00:00:00Z", "--start-date") == D0
    assert parse_time("2027-01-15 00:00", "--start-date") == D0  # no zone: UTC
    assert parse_time("2027-01-15T01:00:00+01:00", "--start-date") == D0
    assert parse_hash_rate("250T") == 250e12
    assert parse_hash_rate("1.5PH/s") == 1.5e15
    assert parse_hash_rate("2e3") == 2000.0
    assert parse_hash_rate("100 kH") == 100e3
