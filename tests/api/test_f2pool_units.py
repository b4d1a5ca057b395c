"""The f2pool edge on its own (no pool run): money conversions, number parsing, the error
table and how validation problems read."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hashquarry.accounts.errors import AccountsError, ConflictError, NotFoundError
from hashquarry.accounts.names import MAX_MONEY
from hashquarry.api.f2pool import errors as e
from hashquarry.api.f2pool import models as f
from hashquarry.api.f2pool.access import coin_string, coins, day_start, parse_coins

# The published table: a code never changes its status or meaning.
STABLE = {
    40001: (400, "invalid_json"),
    40002: (400, "invalid_parameter"),
    40003: (400, "missing_parameter"),
    40004: (400, "unsupported_currency"),
    40101: (401, "unauthorized"),
    40102: (401, "invalid_secret"),
    40301: (403, "forbidden"),
    40302: (403, "permission_denied"),
    40401: (404, "not_found"),
    40402: (404, "record_not_found"),
    40501: (405, "method_not_allowed"),
    40901: (409, "conflict"),
    40902: (409, "payout_refused"),
    41301: (413, "payload_too_large"),
    41501: (415, "unsupported_media_type"),
    42901: (429, "rate_limited"),  # was 429 until every code had five digits
    50001: (500, "internal_error"),
    50301: (503, "service_unavailable"),
}


def test_the_error_table_is_stable() -> None:
    assert {code: (s, t) for code, (s, t, _) in e.ERROR_CODES.items()} == STABLE
    types = [t for _, t, _ in e.ERROR_CODES.values()]
    assert len(types) == len(set(types))
    for code, (status, _, _) in e.ERROR_CODES.items():
        assert 10_000 <= code < 100_000 and code // 100 == status  # five digits, from the status


@given(st.integers(0, MAX_MONEY))
def test_amounts_survive_the_edge_both_ways(units: int) -> None:
    assert parse_coins(coin_string(units), "x") == units
    assert round(coins(units) * 100_000_000) == units
    assert Decimal(coin_string(units)) * 100_000_000 == units


@pytest.mark.parametrize(
    ("units", "text"),
    [(0, "0"), (1, "0.00000001"), (1_000_000, "0.01"), (100_000_000, "1"), (123_450_000, "1.2345")],
)
def test_thresholds_read_as_plain_decimals(units: int, text: str) -> None:
    assert coin_string(units) == text


@pytest.mark.parametrize("value", ["-0.1", "0.000000001", "abc", "NaN", "inf", "1e9", True, None])
def test_bad_amounts_are_refused(value: object) -> None:
    with pytest.raises(e.F2PoolError) as caught:
        parse_coins(value, "threshold")
    assert caught.value.code == e.INVALID_PARAMETER and "threshold" in caught.value.msg


def test_days_are_utc_midnights() -> None:
    assert day_start("1970-01-02") == 86400
    assert day_start(None) == 0


@pytest.mark.parametrize(("value", "expected"), [(5, 5), ("42", 42), ("-7", -7), (3.0, 3)])
def test_int64_takes_proto3_json_forms(value: object, expected: int) -> None:
    assert f.TerminateReq.model_validate({"order_id": value}).order_id == expected


@pytest.mark.parametrize("value", [1.5, True, "1e3", "", "0x10", 2**63, [], None])
def test_int64_refuses_other_values(value: object) -> None:
    with pytest.raises(ValidationError):
        f.TerminateReq.model_validate({"order_id": value})


@pytest.mark.parametrize("value", ["abc", True, float("nan"), float("inf"), [], ""])
def test_doubles_are_finite_numbers(value: object) -> None:
    with pytest.raises(ValidationError):
        f.RevenueAddReq.model_validate(
            {"currency": "bitcoin", "distributor": "a1", "recipient": "b1", "proportion": value}
        )


def test_unknown_fields_are_ignored_like_protobuf() -> None:
    req = f.UserMiningReq.model_validate({"currency": "bitcoin", "user_name": "x", "extra": 1})
    assert req.mining_user_name is None and req.address is None


def test_validation_problems_name_the_field() -> None:
    try:
        f.InfoListReq.model_validate({"reqs": [{"currency": "bitcoin"}, {"currency": 5}]})
    except ValidationError as exc:
        error = e.from_validation_error(exc.errors())
    assert error.code == e.INVALID_PARAMETER
    assert error.msg.startswith("invalid_parameter: reqs[1].currency: ")
    assert "(got 5)" in error.msg
    try:
        f.DistributeReq.model_validate({"currency": "bitcoin"})
    except ValidationError as exc:
        error = e.from_validation_error(exc.errors())
    assert error.code == e.MISSING_PARAMETER
    for field in ("distributor", "recipient", "start_date", "end_date", "hash_rate"):
        assert field in error.msg


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (NotFoundError("mining_user_name", "mining user 'x' not found"), e.PERMISSION_DENIED),
        (
            NotFoundError("reqs[3].mining_user_name", "mining user 'x' not found"),
            e.PERMISSION_DENIED,
        ),
        (NotFoundError("recipient", "mining user 'x' not found"), e.PERMISSION_DENIED),
        (NotFoundError("order_id", "hashrate order 9 not found"), e.RECORD_NOT_FOUND),
        (NotFoundError("owner", "unknown owner 'x'"), e.INVALID_SECRET),
        (ConflictError("hash_rate", "would oversell"), e.CONFLICT),
        (AccountsError("currency", "'litecoin' is not mined on this pool"), e.UNSUPPORTED_CURRENCY),
        (AccountsError("mode", "'x' is not a settle mode"), e.INVALID_PARAMETER),
    ],
)
def test_service_errors_map_to_codes(exc: AccountsError, code: int) -> None:
    assert e.from_accounts_error(exc).code == code


def test_request_models_publish_the_document_types() -> None:
    schema = f.HistoryReq.model_json_schema()
    interval = schema["properties"]["interval"]
    assert {"type": "integer", "format": "int64"} in interval.get("anyOf", [interval])
    proportion = f.RevenueAddReq.model_json_schema()["properties"]["proportion"]
    assert proportion["type"] == "number"
