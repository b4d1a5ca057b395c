"""Bitcoin wire encodings: compact sizes and minimal script pushes."""

from __future__ import annotations


def varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint of a negative number")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a compact size at `pos`; returns (value, new position)."""
    if pos >= len(data):
        raise ValueError("truncated varint")
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    width = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    end = pos + 1 + width
    if end > len(data):
        raise ValueError("truncated varint")
    return int.from_bytes(data[pos + 1 : end], "little"), end


def script_number(n: int) -> bytes:
    """Minimal little-endian signed encoding used by CScriptNum."""
    if n == 0:
        return b""
    neg = n < 0
    absn = -n if neg else n
    out = bytearray()
    while absn:
        out.append(absn & 0xFF)
        absn >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0x00)
    elif neg:
        out[-1] |= 0x80
    return bytes(out)


def push_data(data: bytes) -> bytes:
    """A script push of `data` with the smallest opcode."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + n.to_bytes(2, "little") + data
    return b"\x4e" + n.to_bytes(4, "little") + data


def bip34_height_push(height: int) -> bytes:
    """The coinbase scriptSig prefix BIP34 requires: `CScript() << height`.

    Core's consensus check compares against exactly that serialization, which uses
    OP_0 and OP_1..OP_16 for small heights and a minimal CScriptNum push otherwise.
    """
    if height < 0:
        raise ValueError("height must not be negative")
    if height == 0:
        return b"\x00"  # OP_0
    if 1 <= height <= 16:
        return bytes([0x50 + height])  # OP_1..OP_16
    return push_data(script_number(height))


def read_bip34_height(script_sig: bytes) -> int:
    """Parse the height back out of a coinbase scriptSig."""
    if not script_sig:
        raise ValueError("empty coinbase script")
    op = script_sig[0]
    if op == 0x00:
        return 0
    if 0x51 <= op <= 0x60:
        return op - 0x50
    if 1 <= op <= 8:
        raw = script_sig[1 : 1 + op]
        if len(raw) != op:
            raise ValueError("truncated height push")
        value = int.from_bytes(raw, "little")
        if raw[-1] & 0x80:
            value = -(value & ~(0x80 << (8 * (op - 1))))
        return value
    raise ValueError(f"coinbase script does not start with a height push (opcode {op:#x})")
