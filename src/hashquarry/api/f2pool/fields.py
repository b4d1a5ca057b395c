"""f2pool's JSON scalars for request fields, validated as proto3 JSON reads them.

int64 and int32 take JSON integers or strings of digits (proto3 JSON writes int64 as a
string), and integral floats such as 3.0; never booleans, fractions or exponents.
Doubles take finite numbers (or numeric strings). Each publishes the document's type and
format in the OpenAPI schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

_DIGITS = re.compile(r"-?\d{1,19}")


def _integer(bits: int) -> Callable[[object], int]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an integer, not a boolean")
        if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"must be an integer, not {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside the int{bits} range")
        return value

    return check


def _double(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError("must be a finite number")
    return out


Int64 = Annotated[
    int, BeforeValidator(_integer(64)), WithJsonSchema({"type": "integer", "format": "int64"})
]
Int32 = Annotated[
    int, BeforeValidator(_integer(32)), WithJsonSchema({"type": "integer", "format": "int32"})
]
Double = Annotated[
    float, BeforeValidator(_double), WithJsonSchema({"type": "number", "format": "double"})
]
Name = Annotated[str, Field(max_length=64, description="Account name")]
Currency = Annotated[str, Field(max_length=32, description="Currency type, e.g. bitcoin")]
Address = Annotated[str, Field(max_length=128, description="Wallet address")]
Amount = Annotated[str, Field(max_length=32, description="decimal coins, e.g. '0.01'")]
