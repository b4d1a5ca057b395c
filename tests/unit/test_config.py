"""Configuration loading: TOML + HASHQUARRY_* environment, errors that name the key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hashquarry.config import ConfigError, Settings, load_settings

REGTEST_ADDRESS = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
MAINNET_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"

BASE = f"""
[pool]
address = "{REGTEST_ADDRESS}"
network = "regtest"
"""

WriteConfig = Callable[[str], Path]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own HASHQUARRY_* variables must not leak into these tests."""
    for key in list(os.environ):
        if key.upper().startswith("HASHQUARRY_"):
            monkeypatch.delenv(key)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(text: str) -> Path:
        path = tmp_path / "hashquarry.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    return str(info.value)


def test_minimal_file_loads_with_defaults(write_config: WriteConfig) -> None:
    s = load_settings(write_config(BASE))
    assert isinstance(s, Settings)
    assert s.pool.address == REGTEST_ADDRESS and s.pool.network == "regtest"
    assert s.node.url == "http://127.0.0.1:8332"
    assert s.stratum.version_mask == 0x1FFFE000
    assert s.stratum.vardiff.target_interval == 10.0
    assert [(p.port, p.difficulty) for p in s.stratum.ports] == [(3333, 1.0)]


def test_full_file_values(write_config: WriteConfig) -> None:
    text = (
        BASE
        + """
tag = "/q/"
extranonce2_size = 4

[node]
url = "http://10.0.0.2:18443"
user = "rpc"

[stratum]
version_mask = "00ffe000"
ports = [{ port = 3333, difficulty = 0.001 }, { port = 3334, difficulty = 65536 }]

[stratum.vardiff]
target_interval = 5
min_difficulty = 1e-9
"""
    )
    s = load_settings(write_config(text))
    assert s.pool.tag == "/q/" and s.pool.extranonce2_size == 4
    assert s.node.url == "http://10.0.0.2:18443" and s.node.user == "rpc"
    assert s.stratum.version_mask == 0x00FFE000
    assert [p.port for p in s.stratum.ports] == [3333, 3334]
    assert s.stratum.vardiff.target_interval == 5.0
    assert s.stratum.vardiff.min_difficulty == 1e-9


@pytest.mark.parametrize(
    ("snippet", "key", "reason"),
    [
        ("[stratum.vardiff]\ntarget_interval = -1", "stratum.vardiff.target_interval", "greater"),
        ("[stratum.vardiff]\nvariance = 1.5", "stratum.vardiff.variance", "less than 1"),
        (
            "[stratum.vardiff]\nmin_difficulty = 10.0\nmax_difficulty = 1.0",
            "stratum.vardiff",
            "min_difficulty must not exceed max_difficulty",
        ),
        ('[node]\nurl = "127.0.0.1:8332"', "node.url", "must start with http://"),
        ("[node]\npoll_interval = 0", "node.poll_interval", "greater than 0"),
        ('[stratum]\nversion_mask = "nothex"', "stratum.version_mask", "hex string"),
        ("[stratum]\nversion_mask = -1", "stratum.version_mask", "greater than or equal"),
        (
            "[stratum]\nports = [{ port = 1, difficulty = 1 }, { port = 1, difficulty = 2 }]",
            "stratum.ports",
            "distinct",
        ),
        ("[stratum]\nports = [{ port = 70000, difficulty = 1 }]", "stratum.ports.0.port", "less"),
        ('log_level = "LOUD"', "log_level", "DEBUG, INFO"),
    ],
)
def test_bad_value_names_key_and_reason(
    write_config: WriteConfig, snippet: str, key: str, reason: str
) -> None:
    message = config_error(write_config(snippet + "\n" + BASE))
    line = next((ln for ln in message.splitlines() if ln.strip().startswith(key + ":")), None)
    assert line is not None, message
    assert reason in line, message


@pytest.mark.parametrize(
    ("pool_extra", "key", "reason"),
    [
        ("extranonce2_size = 1", "pool.extranonce2_size", "greater than or equal to 2"),
        ('tag = "' + "x" * 41 + '"', "pool.tag", "at most 40"),
        ("extranonce1_prefix = 256", "pool.extranonce1_prefix", "less than or equal to 255"),
    ],
)
def test_bad_pool_value_names_key(
    write_config: WriteConfig, pool_extra: str, key: str, reason: str
) -> None:
    message = config_error(write_config(BASE + pool_extra + "\n"))
    assert f"{key}: " in message and reason in message, message


def test_address_for_another_network_gives_the_reason(write_config: WriteConfig) -> None:
    text = f'[pool]\naddress = "{MAINNET_ADDRESS}"\nnetwork = "regtest"\n'
    message = config_error(write_config(text))
    assert "address" in message
    assert MAINNET_ADDRESS in message
    assert "is for mainnet" in message and "regtest" in message


@pytest.mark.parametrize(
    ("pool_body", "key"),
    [
        (f'address = "{MAINNET_ADDRESS}"\nnetwork = "regtest"', "pool.address"),
        (f'address = "{REGTEST_ADDRESS}"\nnetwork = "moon"', "pool.network"),
    ],
)
def test_pool_address_and_network_errors_name_the_dotted_key(
    write_config: WriteConfig, pool_body: str, key: str
) -> None:
    message = config_error(write_config(f"[pool]\n{pool_body}\n"))
    assert f"{key}: " in message, message


def test_tag_too_long_in_bytes_is_a_config_error(write_config: WriteConfig) -> None:
    message = config_error(write_config(BASE + 'tag = "' + "\u20ac" * 40 + '"\n'))
    assert "pool.tag: " in message, message


def test_settle_after_shorter_than_an_rpc_timeout_is_refused(write_config: WriteConfig) -> None:
    """A sendmany the node may still be carrying out must not be judged unpaid."""
    text = BASE + "\n[node]\nrpc_timeout = 30\n\n[payouts]\nsettle_after = 5\n"
    message = config_error(write_config(text))
    assert "settle_after (5 s) must be at least node.rpc_timeout (30 s)" in message, message
    ok = BASE + "\n[node]\nrpc_timeout = 30\n\n[payouts]\nsettle_after = 30\n"
    assert load_settings(write_config(ok)).payouts.settle_after == 30


def test_missing_pool_address_names_it(write_config: WriteConfig) -> None:
    message = config_error(write_config('[pool]\nnetwork = "regtest"\n'))
    assert "pool.address: Field required" in message, message


def test_several_errors_are_all_reported(write_config: WriteConfig) -> None:
    text = BASE + '[node]\nurl = "ftp://x"\n[stratum.vardiff]\ntarget_interval = 0\n'
    message = config_error(write_config(text))
    assert message.startswith("invalid configuration:")
    assert "node.url:" in message and "stratum.vardiff.target_interval:" in message


def test_env_override_beats_the_file(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(BASE + '[node]\nurl = "http://file-host:8332"\nuser = "from-file"\n')
    assert load_settings(path).node.url == "http://file-host:8332"
    monkeypatch.setenv("HASHQUARRY_NODE__URL", "http://env-host:18443")
    s = load_settings(path)
    assert s.node.url == "http://env-host:18443"
    assert s.node.user == "from-file"  # the rest of the section still comes from the file
    assert s.pool.address == REGTEST_ADDRESS


def test_env_override_is_validated_too(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASHQUARRY_NODE__URL", "env-host:18443")
    message = config_error(write_config(BASE))
    assert "node.url: must start with http://" in message


def test_explicit_override_beats_env(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASHQUARRY_LOG_LEVEL", "ERROR")
    path = write_config('log_level = "WARNING"\n' + BASE)
    assert load_settings(path).log_level == "ERROR"
    assert load_settings(path, log_level="debug").log_level == "DEBUG"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_toml_syntax_error(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(write_config("[pool\naddress = "))


def test_unknown_top_level_key_is_an_error(write_config: WriteConfig) -> None:
    message = config_error(write_config("pool_adress = 'x'\n" + BASE))
    assert "pool_adress: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("[stratum.vardiff]\ntarget_intervall = 5", "stratum.vardiff.target_intervall"),
        ('[node]\nurl = "http://x:1"\npasword = "secret"', "node.pasword"),
    ],
)
def test_unknown_nested_key_is_an_error(write_config: WriteConfig, snippet: str, key: str) -> None:
    message = config_error(write_config(snippet + "\n" + BASE))
    assert f"{key}: Extra inputs are not permitted" in message, message
