"""The pure rules of accounts: API keys and scopes, names, addresses, thresholds, page
permissions, settle-mode switches and the Stratum authorizer's cache."""

from __future__ import annotations

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.accounts import keys, names, pages, settle
from hashquarry.accounts.authorizer import UserCache, make_authorizer
from hashquarry.accounts.errors import AccountsError
from hashquarry.chain.address import address_to_script, script_to_address
from hashquarry.stratum.identity import ACCOUNT_RE

REGTEST_P2PKH = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
TESTNET_P2PKH = "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ"
MAINNET_P2PKH = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
TESTNET_BECH32 = "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"

# -- API keys ------------------------------------------------------------------------------


def test_secret_shape_prefix_and_hash() -> None:
    secret = keys.generate_secret()
    assert secret.startswith("hq_")
    assert len(secret) == 3 + 43  # token_urlsafe(32) is 43 characters
    assert keys.looks_like_secret(secret)
    assert keys.shown_prefix(secret) == secret[:8]
    assert keys.hash_secret(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert keys.verify_secret(secret, keys.hash_secret(secret))
    assert not keys.verify_secret(secret + "x", keys.hash_secret(secret))
    assert len({keys.generate_secret() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "bad", [None, 42, "", "hq_", "hq_short", "xx_" + "a" * 43, "hq_" + "a" * 200, "hq_ünïcödé12"]
)
def test_garbage_is_not_a_secret(bad: object) -> None:
    assert not keys.looks_like_secret(bad)


def test_scopes_parse_from_list_or_comma_string_and_all() -> None:
    assert keys.parse_scopes(["read_hashrate", "manage_payouts"]) == {
        keys.Scope.READ_HASHRATE,
        keys.Scope.MANAGE_PAYOUTS,
    }
    assert keys.parse_scopes("read_revenue, READ_PAYMENTS") == {
        keys.Scope.READ_REVENUE,
        keys.Scope.READ_PAYMENTS,
    }
    assert keys.parse_scopes("all") == keys.ALL_SCOPES
    assert len(keys.ALL_SCOPES) == 7


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "at least one scope"),
        ([], "at least one scope"),
        (" , ", "at least one scope"),
        ("read_hashrate,write_everything", "unknown scope 'write_everything'"),
        ([3], "not a scope name"),
    ],
)
def test_bad_scopes_say_why(value: object, reason: str) -> None:
    with pytest.raises(AccountsError) as err:
        keys.parse_scopes(value)  # type: ignore[arg-type]
    assert err.value.field == "scopes"
    assert reason in err.value.reason


@given(st.sets(st.sampled_from(list(keys.Scope)), min_size=1))
def test_scopes_round_trip_through_the_stored_form(chosen: set[keys.Scope]) -> None:
    assert keys.parse_scopes(keys.format_scopes(chosen)) == chosen


# -- mining-user names -----------------------------------------------------------------------

NAME_ALPHABET = string.ascii_letters + string.digits + "_-. éß٣"


@given(st.text(alphabet=NAME_ALPHABET, max_size=20))
def test_name_rule_agrees_with_stratum_account_re(name: str) -> None:
    # A name accepted here must be minable as `name.worker`, and nothing else may be.
    assert (names.mining_user_name_problem(name) is None) == bool(ACCOUNT_RE.fullmatch(name))


@given(
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=1),
    st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=14),
)
def test_valid_names_are_accepted(first: str, rest: str) -> None:
    assert names.check_mining_user_name(first + rest) == first + rest


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a", "is 1 characters long; 2-15 are allowed"),
        ("abcdefghijklmnop", "is 16 characters long; 2-15 are allowed"),
        ("1abc", "must begin with a lowercase letter"),
        ("Alice", "must begin with a lowercase letter"),
        ("alIce", "contains 'I'; only lowercase letters a-z and digits 0-9"),
        ("al_ice", "contains '_'"),
        ("al.ice", "contains '.'"),
        ("al٣ce", "contains '٣'"),  # a Unicode digit: isdigit() would have said yes
        (42, "must be a string"),
    ],
)
def test_bad_names_say_which_rule_failed(name: object, reason: str) -> None:
    with pytest.raises(AccountsError) as err:
        names.check_mining_user_name(name)
    assert err.value.field == "mining_user_name"
    assert reason in err.value.reason


@pytest.mark.parametrize("bad", ["", "Bob", "9lives", "a b", "x" * 65])
def test_owner_names_are_checked(bad: str) -> None:
    with pytest.raises(AccountsError) as err:
        names.check_owner_name(bad)
    assert err.value.field == "owner"


def test_owner_names_allow_dash_and_underscore() -> None:
    assert names.check_owner_name("acme-mining_2") == "acme-mining_2"


# -- currencies and addresses ----------------------------------------------------------------

MAIN = {"bitcoin": "main"}
DEMO = {"bitcoin": "regtest"}


def test_currency_must_be_one_this_pool_pays() -> None:
    assert names.currency_network("bitcoin", MAIN) == "main"
    with pytest.raises(AccountsError, match="'litecoin' is not mined on this pool"):
        names.currency_network("litecoin", MAIN)
    with pytest.raises(AccountsError, match="unknown currency 'dogecoin2'") as err:
        names.currency_network("dogecoin2", MAIN)
    assert err.value.field == "currency"


def test_networks_mapping_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown network 'mainnet'"):
        names.check_networks({"bitcoin": "mainnet"})
    with pytest.raises(ValueError, match="at least one currency"):
        names.check_networks({})


def test_address_for_another_network_says_which() -> None:
    with pytest.raises(AccountsError) as err:
        names.normalize_address("bitcoin", TESTNET_P2PKH, MAIN)
    assert err.value.field == "address"
    assert "is for testnet" in err.value.reason
    assert "but the pool runs on mainnet" in err.value.reason
    with pytest.raises(AccountsError, match="is for mainnet, but the pool runs on regtest"):
        names.normalize_address("bitcoin", MAINNET_P2PKH, DEMO)
    with pytest.raises(AccountsError, match="is for testnet"):
        names.normalize_address("bitcoin", TESTNET_BECH32, MAIN)


def test_addresses_are_stored_in_canonical_form() -> None:
    assert names.normalize_address("bitcoin", MAINNET_P2PKH, MAIN) == MAINNET_P2PKH
    bech32 = script_to_address(b"\x00\x14" + bytes(range(20)), "regtest")
    assert names.normalize_address("bitcoin", bech32.upper(), DEMO) == bech32
    assert names.address_on(bech32.upper(), "regtest") == bech32
    assert names.address_on("alice", "regtest") is None
    assert names.address_on(REGTEST_P2PKH, "main") is None
    with pytest.raises(AccountsError, match="has a bad checksum"):
        names.normalize_address("bitcoin", MAINNET_P2PKH[:-1] + "b", MAIN)
    with pytest.raises(AccountsError, match="must be a string"):
        names.normalize_address("bitcoin", None, MAIN)
    assert address_to_script(REGTEST_P2PKH, "regtest")


# -- thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "below the minimum of 0"),
        (0.5, "must be an integer"),
        ("100", "must be an integer"),
        (True, "must be an integer"),
        (names.MAX_MONEY + 1, "21 million coins"),
    ],
)
def test_bad_thresholds(value: object, reason: str) -> None:
    with pytest.raises(AccountsError) as err:
        names.check_threshold(value)
    assert err.value.field == "threshold"
    assert reason in err.value.reason


def test_threshold_minimum() -> None:
    assert names.check_threshold(0) == 0
    assert names.check_threshold(names.MAX_MONEY) == names.MAX_MONEY
    with pytest.raises(AccountsError, match="below the minimum of 10000"):
        names.check_threshold(9_999, minimum=10_000)


# -- read-only page permissions --------------------------------------------------------------


def test_permissions_parse_and_format() -> None:
    assert pages.parse_permissions("1,3") == {1, 3}
    assert pages.parse_permissions(2) == {2}
    assert pages.parse_permissions([3, "1"]) == {1, 3}
    assert pages.format_permissions({3, 1}) == "1,3"


@pytest.mark.parametrize("bad", ["", "0", "4", "1,x", [], True, [1, None]])
def test_bad_permissions(bad: object) -> None:
    with pytest.raises(AccountsError) as err:
        pages.parse_permissions(bad)  # type: ignore[arg-type]
    assert err.value.field == "permissions"


def test_pages_show_only_what_their_permissions_name() -> None:
    view = pages.View
    assert pages.page_allows({1}, view.HASHRATE) and pages.page_allows({1}, view.WORKERS)
    assert not pages.page_allows({1}, view.REVENUE)
    assert not pages.page_allows({1}, view.PAYMENTS)
    assert pages.page_allows({2}, view.REVENUE) and pages.page_allows({2}, view.PAYMENTS)
    assert not pages.page_allows({2}, view.HASHRATE)
    assert pages.page_allows({3}, view.REVENUE)
    assert not pages.page_allows({3}, view.PAYMENTS)  # revenue *without* payments
    assert pages.page_allows({1, 3}, "workers") and not pages.page_allows({1, 3}, "payments")


def test_page_keys_are_random_and_url_safe() -> None:
    found = {pages.new_page_key() for _ in range(50)}
    assert len(found) == 50
    assert all(len(k) == 24 and set(k) <= set(string.ascii_letters + string.digits + "-_")
               for k in found)  # fmt: skip


def test_page_keys_never_begin_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CI run drew "-v9JS..." and `user page-delete` read it as an option.
    draws = iter(["-dashfirst", "_fine"])
    monkeypatch.setattr(pages.secrets, "token_urlsafe", lambda n: next(draws))
    assert pages.new_page_key() == "_fine"


# -- settle-mode switches --------------------------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def test_settle_modes_and_default_activation() -> None:
    assert settle.check_mode("FPPS") == "fpps"
    with pytest.raises(AccountsError, match="'ppl' is not a settle mode") as err:
        settle.check_mode("ppl")
    assert err.value.field == "mode"
    assert settle.next_utc_midnight(NOW) == 1_700_006_400.0
    assert settle.activation_time(None, NOW) == 1_700_006_400.0
    assert settle.activation_time(NOW, NOW) == NOW
    assert settle.activation_time(int(NOW) + 60, NOW) == NOW + 60


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (NOW - 1, "is in the past"),
        (NOW * 1000, "milliseconds?"),
        ("tomorrow", "must be Unix seconds"),
        (True, "must be Unix seconds"),
        (float("nan"), "finite"),
    ],
)
def test_bad_activation_times(value: object, reason: str) -> None:
    with pytest.raises(AccountsError) as err:
        settle.activation_time(value, NOW)
    assert err.value.field == "activated_at"
    assert reason in err.value.reason


# -- the Stratum authorizer ------------------------------------------------------------------


def test_authorizer_refuses_until_loaded_then_knows_users() -> None:
    cache = UserCache()
    authorize = make_authorizer(cache)
    assert "loading" in (authorize("alice", "rig1", False) or "")
    assert authorize(REGTEST_P2PKH, "rig1", True) is None  # address mode needs no account
    cache.replace(["alice"], ["mallory"], NOW)
    assert authorize("alice", "rig1", False) is None
    assert authorize("bob", "rig1", False) == "unknown mining user 'bob'"
    assert authorize("mallory", "rig1", False) == "mining user 'mallory' is disabled"
    cache.add("bob")
    assert authorize("bob", "rig1", False) is None


def test_authorizer_can_refuse_address_mode() -> None:
    cache = UserCache()
    cache.replace([], [], NOW)
    authorize = make_authorizer(cache, allow_address_mode=False)
    assert "address mode is off" in (authorize(REGTEST_P2PKH, "x", True) or "")
