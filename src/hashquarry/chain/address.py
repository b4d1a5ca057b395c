"""Payout addresses to scriptPubKeys (and back), strictly validated.

Base58check (P2PKH, P2SH) and bech32/bech32m segwit addresses (BIP 173, BIP 350) are
implemented here rather than imported: they are small, and the pool has to refuse any
address it cannot pay to before it builds a block template around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from hashquarry.chain.hashing import sha256d


class AddressError(ValueError):
    """An address (or script) the pool cannot pay to; the message says what is wrong."""


@dataclass(frozen=True)
class Network:
    name: str
    p2pkh: int  # base58 version byte of P2PKH addresses
    p2sh: int
    hrp: str  # bech32 human-readable part


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network("main", 0x00, 0x05, "bc"),
        Network("test", 0x6F, 0xC4, "tb"),
        Network("signet", 0x6F, 0xC4, "tb"),
        Network("regtest", 0x6F, 0xC4, "bcrt"),
        Network("bcoin-regtest", 0x3C, 0x26, "rb"),
    )
}

MAX_ADDRESS_LEN = 90  # BIP 173's limit; base58check addresses are far shorter anyway

_LABELS = {"main": "mainnet", "test": "testnet"}

_OP_0, _OP_1, _OP_16 = 0x00, 0x51, 0x60
# Script templates around a 20-byte hash: OP_DUP OP_HASH160 <20> OP_EQUALVERIFY OP_CHECKSIG
# and OP_HASH160 <20> OP_EQUAL.
_P2PKH = (b"\x76\xa9\x14", b"\x88\xac")
_P2SH = (b"\xa9\x14", b"\x87")


def network(name: str) -> Network:
    net = NETWORKS.get(name) if isinstance(name, str) else None
    if net is None:
        raise AddressError(f"unknown network {name!r} (known: {', '.join(NETWORKS)})")
    return net


def _resolve(net: Network | str) -> Network:
    return net if isinstance(net, Network) else network(net)


def _label(net: Network) -> str:
    return _LABELS.get(net.name, net.name)


def _elsewhere(net: Network, owns: Callable[[Network], bool], otherwise: str) -> AddressError:
    """Name the networks an address belongs to: the usual mistake is a testnet address on
    mainnet (or the reverse), and saying so is more useful than "bad prefix"."""
    owners = [_label(n) for n in NETWORKS.values() if n.name != net.name and owns(n)]
    if not owners:
        return AddressError(otherwise)
    names = owners[0] if len(owners) == 1 else ", ".join(owners[:-1]) + " or " + owners[-1]
    return AddressError(f"is for {names}, but the pool runs on {_label(net)}")


# --- bech32 / bech32m (BIP 173, BIP 350) ---------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}


class _Variant(Enum):
    # The value is the constant the checksum polymod must equal.
    BECH32 = 1
    BECH32M = 0x2BC830A3


def _polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate(gen):
            if (top >> i) & 1:
                chk ^= g
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_encode(hrp: str, data: Sequence[int], variant: _Variant) -> str:
    mod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ variant.value
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in [*data, *checksum])


def _bech32_decode(text: str) -> tuple[str, list[int], _Variant]:
    """Split a bech32 or bech32m string into (hrp, 5-bit data without checksum, variant)."""
    if len(text) > MAX_ADDRESS_LEN:
        raise AddressError(f"is {len(text)} characters long (bech32 allows {MAX_ADDRESS_LEN})")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise AddressError("has a character outside printable ASCII")
    if text not in (text.lower(), text.upper()):
        raise AddressError("mixes upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 0:
        raise AddressError("has no '1' separator")
    if sep == 0:
        raise AddressError("has an empty human-readable part")
    if len(text) - sep - 1 < 6:
        raise AddressError("is too short to hold a bech32 checksum")
    hrp, tail = text[:sep], text[sep + 1 :]
    bad = next((c for c in tail if c not in _CHARSET_REV), None)
    if bad is not None:
        raise AddressError(f"has {bad!r}, which is not a bech32 character")
    data = [_CHARSET_REV[c] for c in tail]
    try:
        variant = _Variant(_polymod(_hrp_expand(hrp) + data))
    except ValueError:
        raise AddressError("has a bad checksum (neither bech32 nor bech32m)") from None
    return hrp, data[:-6], variant


def _convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    maxv = (1 << tobits) - 1
    out: list[int] = []
    for value in data:
        acc = ((acc << frombits) | value) & ((1 << (frombits + tobits)) - 1)
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    # Strict decoding keeps one string per program: no spare group, no stray bits.
    elif bits >= frombits:
        raise AddressError(f"has {bits} bits of padding (at most {frombits - 1} allowed)")
    elif (acc << (tobits - bits)) & maxv:
        raise AddressError("has non-zero padding bits")
    return out


def _program_problem(version: int, program: bytes) -> str | None:
    if not 2 <= len(program) <= 40:
        return f"has a {len(program)}-byte witness program (2 to 40 allowed)"
    if version == 0 and len(program) not in (20, 32):
        return f"has a {len(program)}-byte witness v0 program (only 20 or 32 are defined)"
    return None


def _decode_segwit(address: str, net: Network) -> tuple[int, bytes]:
    hrp, data, variant = _bech32_decode(address)
    if hrp != net.hrp:
        raise _elsewhere(
            net,
            lambda n: n.hrp == hrp,
            f"has human-readable part {hrp!r}, no known network's ({net.hrp!r} expected)",
        )
    if not data:
        raise AddressError("has an empty data part (no witness version or program)")
    version = data[0]
    if version > 16:
        raise AddressError(f"has unknown witness version {version} (0 to 16 exist)")
    # BIP 350: v0 keeps bech32; everything later is bech32m so old wallets cannot burn funds.
    wanted = _Variant.BECH32 if version == 0 else _Variant.BECH32M
    if variant is not wanted:
        raise AddressError(
            f"is witness v{version} with a {variant.name.lower()} checksum, "
            f"but v{version} must use {wanted.name.lower()} (BIP 350)"
        )
    program = bytes(_convertbits(data[1:], 5, 8, pad=False))
    problem = _program_problem(version, program)
    if problem:
        raise AddressError(problem)
    return version, program


def _encode_segwit(hrp: str, version: int, program: bytes) -> str:
    variant = _Variant.BECH32 if version == 0 else _Variant.BECH32M
    return _bech32_encode(hrp, [version, *_convertbits(program, 8, 5, pad=True)], variant)


# --- base58check -----------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_REV = {c: i for i, c in enumerate(_B58)}


def _b58check_encode(payload: bytes) -> str:
    raw = payload + sha256d(payload)[:4]
    n = int.from_bytes(raw, "big")
    digits: list[str] = []
    while n:
        n, rem = divmod(n, 58)
        digits.append(_B58[rem])
    zeros = len(raw) - len(raw.lstrip(b"\0"))  # leading zero bytes are spelled as '1'
    return "1" * zeros + "".join(reversed(digits))


def _b58check_decode(text: str) -> bytes:
    bad = next((c for c in text if c not in _B58_REV), None)
    if bad is not None:
        raise AddressError(
            f"has {bad!r}, which is not base58, and is not bech32 for any known network"
        )
    n = 0
    for c in text:
        n = n * 58 + _B58_REV[c]
    zeros = len(text) - len(text.lstrip("1"))
    raw = b"\0" * zeros + n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(raw) < 5:
        raise AddressError("is too short for base58check")
    payload, check = raw[:-4], raw[-4:]
    if sha256d(payload)[:4] != check:
        raise AddressError("has a bad checksum (base58check)")
    return payload


# --- public API ------------------------------------------------------------------------


def _looks_bech32(address: str, net: Network) -> bool:
    sep = address.rfind("1")
    known = {net.hrp, *(n.hrp for n in NETWORKS.values())}
    if sep > 0 and address[:sep].lower() in known:
        return True
    # A valid checksum marks bech32 for an unknown hrp, which deserves a bech32 error.
    try:
        _bech32_decode(address)
    except AddressError:
        return False
    return True


def _script_for(address: str, net: Network) -> bytes:
    if not address:
        raise AddressError("is empty")
    space = next((i for i, c in enumerate(address) if c.isspace()), None)
    if space is not None:
        # Silently stripping would hide copy-paste damage that may have cut the address.
        raise AddressError(f"contains whitespace at position {space}")
    if len(address) > MAX_ADDRESS_LEN:
        raise AddressError(f"is {len(address)} characters long (at most {MAX_ADDRESS_LEN})")
    if _looks_bech32(address, net):
        version, program = _decode_segwit(address, net)
        return bytes([version + _OP_1 - 1 if version else _OP_0, len(program)]) + program
    payload = _b58check_decode(address)
    if len(payload) != 21:
        raise AddressError(f"decodes to {len(payload)} bytes, not 21 (version and hash160)")
    version, hash160 = payload[0], payload[1:]
    for template, byte in ((_P2PKH, net.p2pkh), (_P2SH, net.p2sh)):
        if version == byte:
            return template[0] + hash160 + template[1]
    raise _elsewhere(
        net,
        lambda n: version in (n.p2pkh, n.p2sh),
        f"has version byte 0x{version:02x}, which is no known network's P2PKH or P2SH",
    )


def address_to_script(address: str, net: Network | str) -> bytes:
    """The scriptPubKey paying `address` on `net`; AddressError says why if it cannot."""
    net = _resolve(net)
    if not isinstance(address, str):
        raise AddressError(f"address must be a str, not {type(address).__name__}")
    try:
        return _script_for(address, net)
    except AddressError as exc:
        shown = address if len(address) <= MAX_ADDRESS_LEN else address[:MAX_ADDRESS_LEN] + "..."
        raise AddressError(f"address {shown!r} {exc}") from None


def script_to_address(script: bytes, net: Network | str) -> str:
    """The address for a standard scriptPubKey (bech32 in lowercase, as BIP 173 prefers)."""
    net = _resolve(net)
    s = bytes(script)
    for (head, tail), byte in ((_P2PKH, net.p2pkh), (_P2SH, net.p2sh)):
        if len(s) == len(head) + 20 + len(tail) and s.startswith(head) and s.endswith(tail):
            return _b58check_encode(bytes([byte]) + s[len(head) : -len(tail)])
    if len(s) >= 4 and (s[0] == _OP_0 or _OP_1 <= s[0] <= _OP_16) and s[1] == len(s) - 2:
        version = s[0] - _OP_1 + 1 if s[0] else 0
        if _program_problem(version, s[2:]) is None:
            return _encode_segwit(net.hrp, version, s[2:])
    shown = s.hex() if len(s) <= 64 else s[:64].hex() + "..."
    raise AddressError(f"script {shown} is not P2PKH, P2SH or a valid witness program")


def is_valid_address(address: str, net: Network | str) -> bool:
    net = _resolve(net)  # an unknown network is the caller's bug, so it still raises
    try:
        address_to_script(address, net)
    except AddressError:
        return False
    return True
