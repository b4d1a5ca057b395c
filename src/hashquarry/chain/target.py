"""Compact bits, targets and difficulty (SHA-256d pool difficulty 1 = 0xffff * 2^208)."""

from __future__ import annotations

DIFF1_TARGET = 0xFFFF * 2**208
MAX_TARGET = 2**256 - 1


def bits_to_target(bits: int) -> int:
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:
        raise ValueError(f"negative compact target {bits:#010x}")
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    target = mantissa << (8 * (exponent - 3))
    if target > MAX_TARGET:
        raise ValueError(f"compact target {bits:#010x} overflows 256 bits")
    return target


def target_to_bits(target: int) -> int:
    if target <= 0:
        raise ValueError("target must be positive")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def target_to_difficulty(target: int) -> float:
    if target <= 0:
        raise ValueError("target must be positive")
    return DIFF1_TARGET / target


def difficulty_to_target(difficulty: float) -> int:
    if not difficulty > 0:
        raise ValueError(f"difficulty must be positive, got {difficulty!r}")
    target = int(DIFF1_TARGET / difficulty)
    return min(max(target, 1), MAX_TARGET)


def bits_to_difficulty(bits: int) -> float:
    return target_to_difficulty(bits_to_target(bits))
