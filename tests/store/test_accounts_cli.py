"""`hashquarry owner|apikey|user ...` end to end on a SQLite store (the service's rules are
tested in test_accounts_service.py; this checks the wiring, the output and exit codes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from hashquarry.accounts import tables as t
from hashquarry.accounts.cli import apikey_app, owner_app, user_app
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade
from hashquarry.store.models import metadata

POOL_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # regtest
OTHER_REGTEST = "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ"
MAINNET = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"

# The apps as hashquarry.cli.main mounts them.
app = typer.Typer()
app.add_typer(owner_app, name="owner")
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")


async def _create_accounts_tables(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: metadata.create_all(c, tables=list(t.ACCOUNTS_TABLES)))
    finally:
        await engine.dispose()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HASHQUARRY_STORE__URL", "HASHQUARRY_POOL__NETWORK", "HASHQUARRY_POOL__COIN"):
        monkeypatch.delenv(var, raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    asyncio.run(_create_accounts_tables(url))
    path = tmp_path / "hashquarry.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n'
        f'[pool]\ncoin = "bitcoin"\nnetwork = "regtest"\naddress = "{POOL_ADDRESS}"\n'
        f'[store]\nurl = "{url}"\n'
    )
    return path


def run(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def test_cli_life_of_an_owner(config: Path) -> None:
    assert orjson.loads(run(config, "owner", "create", "acme"))["owner"] == "acme"
    assert "acme" in run(config, "owner", "list")
    created = orjson.loads(
        run(config, "apikey", "create", "--owner", "acme", "-s", "read_hashrate", "-s", "all")
    )
    assert created["secret"].startswith("hq_")
    [key] = orjson.loads(run(config, "apikey", "list", "--owner", "acme", "--json"))
    assert key["prefix"] == created["secret"][:8] and len(key["scopes"]) == 7
    assert created["secret"] not in run(config, "apikey", "list", "--owner", "acme", "--json")
    run(config, "apikey", "revoke", "--owner", "acme", str(created["key_id"]))
    [key] = orjson.loads(run(config, "apikey", "list", "--owner", "acme", "--json"))
    assert key["revoked_at"] is not None

    user = orjson.loads(run(config, "user", "add", "--owner", "acme", "alice"))
    assert user["mining_user_name"] == "alice"
    wallet = orjson.loads(
        run(config, "user", "wallet", "-o", "acme", "alice", "--address", OTHER_REGTEST,
            "--threshold", "250000")
    )  # fmt: skip
    assert (wallet["currency"], wallet["address"], wallet["threshold"]) == (
        "bitcoin",
        OTHER_REGTEST,
        250_000,
    )
    paused = orjson.loads(run(config, "user", "pause", "-o", "acme", "alice"))
    assert paused["results"] == {"alice": "true"} and paused["paused"] is True
    run(config, "user", "resume", "-o", "acme", "alice")
    threshold = orjson.loads(run(config, "user", "threshold", "-o", "acme", "alice", "99"))
    assert threshold["threshold"] == 99
    page = orjson.loads(
        run(config, "user", "page-add", "-o", "acme", "alice", "--permissions", "1,3")
    )["page"]
    assert page["permissions"] == "1,3"
    run(config, "user", "page-delete", "-o", "acme", "alice", page["key"])
    switch = orjson.loads(run(config, "user", "settle-mode", "-o", "acme", "alice",
                              "--mode", "pps"))  # fmt: skip
    assert switch["mode"] == "pps" and switch["activated_at"] % 86_400 == 0

    [listed] = orjson.loads(run(config, "user", "list", "-o", "acme", "--json"))
    assert listed["wallets"][0]["threshold"] == 99 and listed["pages"] == []
    assert "alice" in run(config, "user", "list", "-o", "acme")


def test_cli_errors_go_to_stderr_with_exit_code_2(config: Path) -> None:
    run(config, "owner", "create", "acme")
    run(config, "user", "add", "-o", "acme", "alice")
    err = run(config, "user", "add", "-o", "acme", "Bob", code=2)
    assert err.startswith("hashquarry: mining_user_name: 'Bob' begins with 'B'")
    err = run(config, "user", "wallet", "-o", "acme", "alice", "--address", MAINNET, code=2)
    assert "is for mainnet, but the pool runs on regtest" in err
    err = run(config, "user", "pause", "-o", "acme", "alice", "ghost", code=2)
    assert "mining user 'ghost' not found" in err
    err = run(config, "apikey", "create", "-o", "acme", "-s", "root", code=2)
    assert "unknown scope 'root'" in err
    err = run(config, "user", "list", "-o", "nobody", code=2)
    assert "unknown owner 'nobody'" in err
    missing = config.with_name("missing.toml")
    assert "does not exist" in run(missing, "owner", "list", code=2)
