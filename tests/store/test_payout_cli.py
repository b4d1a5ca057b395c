"""`hashquarry payout list` on a SQLite store: the operator's view of payouts, flagged
ones first of all. The payouts are written by the engine's own book functions (intent
and debits, then compare-and-set status changes), in every status an intent can reach;
tests/e2e/test_payout_tracking.py lists real conflicted and abandoned ones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from hashquarry.cli.payouts_cmd import payout_app
from hashquarry.payouts import book
from hashquarry.store.engine import make_engine
from hashquarry.store.migrate import upgrade

POOL_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"  # regtest
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
TXID = {n: f"{n:x}" * 64 for n in range(1, 7)}

app = typer.Typer()  # as hashquarry.cli.main mounts it
app.add_typer(payout_app, name="payout")

# (id, status, when created, what the intent went through)
PAYOUTS: list[tuple[str, str, dict[str, Any]]] = [
    ("p1confirmed", "confirmed", {"txid": TXID[1], "confirmations": 6}),
    ("p2failed", "failed", {"error": "wallet refused: Insufficient funds"}),
    ("p3sent", "sent", {"txid": TXID[3]}),
    ("p4abandoned", "abandoned",
     {"txid": TXID[4], "error": "abandoned on the node (0 confirmations, conflicts []); "
      "the money is debited and may not have arrived: check and settle by hand"}),
    ("p5conflicted", "conflicted",
     {"txid": TXID[5], "error": "conflicted on the node (-1 confirmations, conflicts "
      "['ab']); the money is debited and may not have arrived: check and settle by hand"}),
    ("p6sending", "sending", {}),
]  # fmt: skip


async def _write(url: str) -> None:
    engine = make_engine(url)
    try:
        for n, (payout_id, status, values) in enumerate(PAYOUTS):
            created = T0 + 600 * n
            due = {"alice": ("addr-a", 1000 + n), "bob": ("addr-b", 2000)}
            async with engine.begin() as conn:
                await book.write_intent(
                    conn, "bitcoin", payout_id, kind="withdraw" if n == 2 else "auto", due=due,
                    fee_policy="pool", now=created,
                )  # fmt: skip
                assert await book.set_status(
                    conn, payout_id, ["intent"], status="sending", sent_at=created + 1
                )
                if status != "sending":
                    assert await book.set_status(
                        conn, payout_id, ["sending"], status=status, **values
                    )
    finally:
        await engine.dispose()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("HASHQUARRY_STORE__URL", "HASHQUARRY_POOL__NETWORK", "HASHQUARRY_POOL__COIN"):
        monkeypatch.delenv(var, raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    asyncio.run(_write(url))
    path = tmp_path / "hashquarry.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n'
        f'[pool]\ncoin = "bitcoin"\nnetwork = "regtest"\naddress = "{POOL_ADDRESS}"\n'
        f'[store]\nurl = "{url}"\n'
    )
    return path


def run(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["payout", "list", *args, "--config", str(config)])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout if code == 0 else result.stderr


def test_lists_every_payout_newest_first(config: Path) -> None:
    found = orjson.loads(run(config, "--json"))
    assert [p["id"] for p in found] == [p for p, _, _ in reversed(PAYOUTS)]
    sent = found[3]
    assert (sent["status"], sent["txid"], sent["total"], sent["kind"]) == (
        "sent",
        TXID[3],
        3002,
        "withdraw",
    )
    assert sent["created_at"] == T0 + 1200 and sent["sent_at"] == T0 + 1201
    assert sent["items"] == {"alice": 1002, "bob": 2000} and sent["error"] is None
    assert [p["id"] for p in orjson.loads(run(config, "--json", "--limit", "2"))] == [
        "p6sending",
        "p5conflicted",
    ]


def test_flagged_is_the_operators_to_do_list(config: Path) -> None:
    flagged = orjson.loads(run(config, "--status", "flagged", "--json"))
    assert [(p["id"], p["status"]) for p in flagged] == [
        ("p6sending", "sending"),
        ("p5conflicted", "conflicted"),
        ("p4abandoned", "abandoned"),
    ]
    assert "check and settle by hand" in flagged[1]["error"]
    some = orjson.loads(run(config, "-s", "failed", "-s", "conflicted", "--json"))
    assert [p["id"] for p in some] == ["p5conflicted", "p2failed"]

    text = run(config, "--status", "flagged")
    lines = text.splitlines()
    assert lines[0].split() == ["id", "status", "total", "created", "(UTC)", "sent", "(UTC)",
                                "txid"]  # fmt: skip
    conflicted = lines[lines.index(next(x for x in lines if x.startswith("p5conflicted")))]
    assert conflicted.split()[:4] == ["p5conflicted", "conflicted", "3004", "2027-01-15"]
    assert conflicted.endswith(TXID[5])  # whole, for copying
    assert "    auto to alice 1004, bob 2000" in lines
    assert "    note: conflicted on the node (-1 confirmations" in text
    assert any(x.startswith("p6sending") and x.endswith("  -") for x in lines)  # no txid yet


def test_a_status_that_is_not_one_is_refused(config: Path) -> None:
    err = run(config, "--status", "lost", code=2)
    assert err.startswith("hashquarry payout list: --status: 'lost' is not one of intent,")
    assert run(config, "--status", "intent") == "no payouts with status intent\n"
