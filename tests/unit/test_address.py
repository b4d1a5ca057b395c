"""Payout address <-> scriptPubKey: BIP 173/350 vectors, base58check, network checks."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashquarry.chain.address import (
    NETWORKS,
    AddressError,
    Network,
    _bech32_decode,
    _Variant,
    address_to_script,
    is_valid_address,
    network,
    script_to_address,
)

# BIP 350 "valid segwit addresses" (its list also carries BIP 173's v0 vectors), with the
# scriptPubKey each one translates to.
BIP350_VALID: list[tuple[str, str]] = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]

BIP173_INVALID: list[str] = [
    "tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty",  # invalid human-readable part
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # invalid checksum
    "BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2",  # invalid witness version
    "bc1rw5uspcuh",  # invalid program length
    "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",  # length
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",  # invalid program length for v0
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7",  # mixed case
    "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",  # zero padding of more than 4 bits
    "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv",  # non-zero padding
    "bc1gmk9yu",  # empty data section
]

# (address, what the BIP says is wrong, a phrase our message must contain)
BIP350_INVALID: list[tuple[str, str, str]] = [
    (
        "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
        "invalid human-readable part",
        "human-readable part 'tc'",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
        "bech32 instead of bech32m",
        "must use bech32m",
    ),
    (
        "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
        "bech32 instead of bech32m",
        "must use bech32m",
    ),
    (
        "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
        "bech32 instead of bech32m",
        "must use bech32m",
    ),
    (
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
        "bech32m instead of bech32",
        "v0 must use bech32 ",
    ),
    (
        "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
        "bech32m instead of bech32",
        "v0 must use bech32 ",
    ),
    (
        "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
        "invalid character in checksum",
        "not a bech32 character",
    ),
    (
        "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
        "invalid witness version",
        "unknown witness version 17",
    ),
    ("bc1pw5dgrnzv", "invalid program length (1 byte)", "1-byte witness program"),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
        "invalid program length (41 bytes)",
        "41-byte witness program",
    ),
    (
        "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
        "invalid program length for witness version 0",
        "16-byte witness v0 program",
    ),
    (
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
        "mixed case",
        "mixes upper and lower case",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
        "zero padding of more than 4 bits",
        "bits of padding",
    ),
    (
        "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
        "non-zero padding in 8-to-5 conversion",
        "non-zero padding",
    ),
    ("bc1gmk9yu", "empty data section", "empty data part"),
]

# Bare bech32/bech32m checksum vectors from BIP 173 and BIP 350 (not addresses).
VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]
INVALID_BECH32_STRINGS = [
    " 1nwldj5",
    "\x7f1axkwrx",
    "\x801eym55h",
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",
    "1pzry9x0s0muk",
    "x1b4n0q5v",
    "li1dgmt3",
    "de1lg7wt\xff",
    "A1G7SGD8",
    "10a06t8",
    "1qzzfhee",
    " 1xj0phk",
    "\x7f1g6xzxy",
    "\x801vctc34",
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m",
    "1qyrz8wqd2c9m",
    "y1b0jsk6g",
    "lt1igcx5c0",
    "in1muywd",
    "mm1crxm3i",
    "au1s5cgom",
    "M1VUXWEZ",
    "16plkw9",
    "1p2gdwpf",
]

# Base58 addresses: the genesis coinbase key, and Bitcoin Core's key_io_valid.json vectors
# (its "testnet4" entries share version bytes with testnet, so they run as "test").
BASE58_VALID: list[tuple[str, str, str]] = [
    (
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        "main",
        "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac",
    ),
    (
        "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo",
        "main",
        "76a914a31c06bd463e3923bc1aadbde48b16976c08071788ac",
    ),
    (
        "36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm",
        "main",
        "a914373b819a068f32b7a6b38b6b38729647cfde01c287",
    ),
    (
        "3BZECeAH8gSKkjrTx8PwMrNQBLG18yHpvf",
        "main",
        "a9146c382dcdf5b284760c8e3fead91f7422cd76aa8787",
    ),
    (
        "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
        "test",
        "76a914ce28b26c57472737f5c3561a1761185bd8589a4388ac",
    ),
    (
        "2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK",
        "test",
        "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187",
    ),
    (
        "mww4LvqtTMKvmeQvizPz2EQv26xTneWrbg",
        "signet",
        "76a914b4110ba93ac54afc14da3bdd19614774a2d55d2988ac",
    ),
    (
        "2N1r7aC69VHeE7yQJPDLi9T1PYq4wnwvjuT",
        "signet",
        "a9145e5a35ab44b3efaea5129ba22b88ba3e2976614587",
    ),
    (
        "n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ",
        "regtest",
        "76a914fdeca3b08e38af53d7c4c60e3ad208ce5066441088ac",
    ),
    (
        "2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA",
        "regtest",
        "a91436e9f191e0b75036a77f65e2eaa4752443233fbe87",
    ),
]

# Segwit addresses for the networks the BIPs leave out (also from key_io_valid.json).
SEGWIT_MORE: list[tuple[str, str, str]] = [
    (
        "tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr",
        "signet",
        "00148b09d55e958d256e200a4e5de6eecbf8dc0ae65b",
    ),
    (
        "tb1pae5um27ahn8n73pgexe3kcwlp8dhswpn684h2k2w6t9a7w3eq65qephd5y",
        "signet",
        "5120ee69cdabddbccf3f4428c9b31b61df09db783833d1eb75594ed2cbdf3a3906a8",
    ),
    (
        "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9",
        "regtest",
        "00146f58bac9506f9bfb821d62e69330410bb56f0085",
    ),
    (
        "bcrt1qan8gntac7z7me2ejt4hpru42ad2f759fmy0m3ejvs98656znv7eqga4uhv",
        "regtest",
        "0020ecce89afb8f0bdbcab325d6e11f2aaeb549f50a9d91fb8e64c814faa685367b2",
    ),
    (
        "bcrt1pfwxjqvtt4tcxrtdluukfmy2dv7xd2qzdfy6kajv5nwn4yam3wxkq3553uh",
        "regtest",
        "51204b8d20316baaf061adbfe72c9d914d678cd5004d49356ec9949ba752777171ac",
    ),
    ("bc1z2rksukkjr8", "main", "520250ed"),
    ("tb1rgv5m6uvdk3kc7qsuz0c79v88ycr5w4wa", "test", "53104329bd718db46d8f021c13f1e2b0e726"),
]

ALL_NETWORKS = list(NETWORKS)
HASH20 = bytes(range(20))


def net_for_hrp(address: str) -> str:
    """The BIP vectors only say "bc" or "tb"; pick the network from the prefix."""
    return {"bc": "main", "tb": "test"}[address.lower()[:2]]


def b58check(payload: bytes) -> str:
    """An independent base58check encoder, so the decoder is not checked against itself."""
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n, out = int.from_bytes(raw, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def p2pkh(h: bytes) -> bytes:
    return b"\x76\xa9\x14" + h + b"\x88\xac"


def p2sh(h: bytes) -> bytes:
    return b"\xa9\x14" + h + b"\x87"


def witness(version: int, program: bytes) -> bytes:
    return bytes([0x50 + version if version else 0, len(program)]) + program


# --- the BIP vectors ------------------------------------------------------------------


@pytest.mark.parametrize(("address", "script_hex"), BIP350_VALID)
def test_bip350_valid_addresses(address: str, script_hex: str) -> None:
    net = net_for_hrp(address)
    script = address_to_script(address, net)
    assert script.hex() == script_hex
    assert script_to_address(script, net) == address.lower()
    assert is_valid_address(address, net)


@pytest.mark.parametrize("address", BIP173_INVALID)
@pytest.mark.parametrize("net", ["main", "test"])
def test_bip173_invalid_addresses(address: str, net: str) -> None:
    with pytest.raises(AddressError):
        address_to_script(address, net)
    assert not is_valid_address(address, net)


@pytest.mark.parametrize(("address", "reason", "phrase"), BIP350_INVALID)
def test_bip350_invalid_addresses(address: str, reason: str, phrase: str) -> None:
    for net in ("main", "test"):
        with pytest.raises(AddressError):
            address_to_script(address, net)
    # On its own network the message must give the BIP's reason, not just "invalid".
    own = "main" if address.lower().startswith("tc") else net_for_hrp(address)
    with pytest.raises(AddressError) as info:
        address_to_script(address, own)
    assert phrase in str(info.value), reason


@pytest.mark.parametrize("text", VALID_BECH32 + VALID_BECH32M)
def test_bech32_checksum_vectors(text: str) -> None:
    hrp, _data, variant = _bech32_decode(text)
    assert variant is (_Variant.BECH32 if text in VALID_BECH32 else _Variant.BECH32M)
    assert hrp == text[: text.rfind("1")].lower()
    # One flipped data character must break the checksum.
    pos = text.rfind("1") + 1
    broken = text[:pos] + chr(ord(text[pos]) ^ 1) + text[pos + 1 :]
    with pytest.raises(AddressError):
        _bech32_decode(broken)


@pytest.mark.parametrize("text", INVALID_BECH32_STRINGS)
def test_bech32_invalid_strings(text: str) -> None:
    with pytest.raises(AddressError):
        _bech32_decode(text)


# --- base58check and other networks ---------------------------------------------------


@pytest.mark.parametrize(("address", "net", "script_hex"), BASE58_VALID + SEGWIT_MORE)
def test_known_addresses(address: str, net: str, script_hex: str) -> None:
    script = address_to_script(address, net)
    assert script.hex() == script_hex
    assert script_to_address(script, net) == address


def test_genesis_address_is_p2pkh_of_satoshis_hash160() -> None:
    script = address_to_script("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", NETWORKS["main"])
    assert script == p2pkh(bytes.fromhex("62e907b15cbf27d5425399ebf6f0fb50ebb88f18"))


def test_testnet_family_shares_base58_but_not_bech32() -> None:
    # test, signet and regtest have the same version bytes; only regtest's hrp differs.
    for net in ("test", "signet", "regtest"):
        assert is_valid_address("mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ", net)
        assert is_valid_address("2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK", net)
    assert is_valid_address("tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr", "test")
    assert not is_valid_address("tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr", "regtest")


def test_bcoin_regtest_prefixes_and_round_trip() -> None:
    net = network("bcoin-regtest")
    pkh, sh = script_to_address(p2pkh(HASH20), net), script_to_address(p2sh(HASH20), net)
    wpkh = script_to_address(witness(0, HASH20), net)
    assert pkh[0] == "R"  # version byte 0x3c
    assert sh[0] == "G"  # version byte 0x26
    assert wpkh.startswith("rb1q")
    assert address_to_script(pkh, net) == p2pkh(HASH20)
    assert address_to_script(sh, net) == p2sh(HASH20)
    assert address_to_script(wpkh, net) == witness(0, HASH20)
    assert b58check(b"\x3c" + HASH20) == pkh


@pytest.mark.parametrize(
    ("address", "net", "phrase"),
    [
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            "main",
            "is for testnet or signet, but the pool runs on mainnet",
        ),
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            "test",
            "is for mainnet, but the pool runs on testnet",
        ),
        (
            "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9",
            "signet",
            "is for regtest, but the pool runs on signet",
        ),
        (
            "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
            "main",
            "is for testnet, signet or regtest, but the pool runs on mainnet",
        ),
        (
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            "regtest",
            "is for mainnet, but the pool runs on regtest",
        ),
        ("3BZECeAH8gSKkjrTx8PwMrNQBLG18yHpvf", "bcoin-regtest", "is for mainnet"),
        (b58check(b"\x3c" + HASH20), "main", "is for bcoin-regtest, but the pool runs on mainnet"),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            "regtest",
            "is for testnet or signet, but the pool runs on regtest",
        ),
    ],
)
def test_network_mismatch_names_the_right_network(address: str, net: str, phrase: str) -> None:
    with pytest.raises(AddressError) as info:
        address_to_script(address, net)
    assert phrase in str(info.value)
    assert repr(address) in str(info.value)


@pytest.mark.parametrize(
    ("address", "phrase"),
    [
        ("", "is empty"),
        (" 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "whitespace at position 0"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa\n", "whitespace at position 34"),
        ("bc1qw508d6qejxtdg4y5r3z arvary0c5xw7kv8f3t4", "whitespace"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\t", "whitespace"),
        ("1" * 91, "91 characters long"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "bad checksum"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bad checksum"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "not base58"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kV8F3T4", "mixes upper and lower case"),
        (b58check(b"\x00" + HASH20 + b"\x00"), "decodes to 22 bytes, not 21"),
        (b58check(b"\x30" + HASH20), "version byte 0x30"),
        ("1111", "too short"),
    ],
)
def test_error_messages_say_what_is_wrong(address: str, phrase: str) -> None:
    with pytest.raises(AddressError) as info:
        address_to_script(address, "main")
    assert phrase in str(info.value)


def test_address_must_be_a_string() -> None:
    with pytest.raises(AddressError, match="must be a str"):
        address_to_script(b"1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "main")  # type: ignore[arg-type]
    assert not is_valid_address(None, "main")  # type: ignore[arg-type]


def test_uppercase_bech32_is_accepted_and_re_encoded_lowercase() -> None:
    address = "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"
    assert script_to_address(address_to_script(address, "main"), "main") == address.lower()


# --- networks ---------------------------------------------------------------------------


def test_network_table() -> None:
    assert network("main") == Network("main", 0x00, 0x05, "bc")
    assert network("test") == Network("test", 0x6F, 0xC4, "tb")
    assert network("signet") == Network("signet", 0x6F, 0xC4, "tb")
    assert network("regtest") == Network("regtest", 0x6F, 0xC4, "bcrt")
    assert network("bcoin-regtest") == Network("bcoin-regtest", 0x3C, 0x26, "rb")
    assert all(network(name).name == name for name in NETWORKS)


def test_unknown_network_lists_the_known_ones() -> None:
    with pytest.raises(AddressError) as info:
        network("mainnet")
    for name in NETWORKS:
        assert name in str(info.value)
    with pytest.raises(AddressError):
        address_to_script("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "testnet3")
    with pytest.raises(AddressError):
        is_valid_address("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "nope")


def test_network_object_and_name_are_interchangeable() -> None:
    address = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
    assert address_to_script(address, "main") == address_to_script(address, NETWORKS["main"])


# --- script_to_address ------------------------------------------------------------------


@pytest.mark.parametrize(
    "script_hex",
    [
        "",
        "6a0401020304",  # OP_RETURN
        "2102" + "11" * 32 + "ac",  # P2PK
        "76a914" + "00" * 20 + "87",  # P2PKH with the wrong tail
        "a914" + "00" * 20 + "88",
        "0015" + "00" * 21,  # v0 with a 21-byte program
        "0014" + "00" * 19,  # push length does not match
        "5101" + "00",  # v1 with a 1-byte program
        "6029" + "00" * 41,  # v16 with a 41-byte program
        "4f02" + "0000",  # OP_1NEGATE is not a witness version
    ],
)
def test_script_to_address_rejects_non_standard(script_hex: str) -> None:
    with pytest.raises(AddressError, match="not P2PKH, P2SH or a valid witness program"):
        script_to_address(bytes.fromhex(script_hex), "main")


# --- properties -------------------------------------------------------------------------

networks = st.sampled_from(ALL_NETWORKS)


@given(
    program=st.binary(min_size=20, max_size=20) | st.binary(min_size=32, max_size=32), net=networks
)
def test_round_trip_20_and_32_byte_programs(program: bytes, net: str) -> None:
    scripts = [witness(0, program)]
    if len(program) == 20:
        scripts += [p2pkh(program), p2sh(program)]
    else:
        scripts.append(witness(1, program))  # P2TR
    for script in scripts:
        address = script_to_address(script, net)
        assert address_to_script(address, net) == script
        if script[0] in (0x00, 0x51):
            assert address.startswith(NETWORKS[net].hrp + "1")
            assert address == address.lower()


@given(
    version=st.integers(min_value=1, max_value=16),
    program=st.binary(min_size=2, max_size=40),
    net=networks,
)
def test_round_trip_any_witness_version(version: int, program: bytes, net: str) -> None:
    script = witness(version, program)
    address = script_to_address(script, net)
    assert address_to_script(address, net) == script
    assert address_to_script(address.upper(), net) == script


@given(program=st.binary(min_size=20, max_size=20), source=networks, target=networks)
def test_cross_network_accepts_only_matching_parameters(
    program: bytes, source: str, target: str
) -> None:
    src, dst = NETWORKS[source], NETWORKS[target]
    for script, same in [
        (p2pkh(program), src.p2pkh == dst.p2pkh),
        (witness(0, program), src.hrp == dst.hrp),
    ]:
        address = script_to_address(script, src)
        if same:
            assert address_to_script(address, dst) == script
        else:
            with pytest.raises(AddressError, match="but the pool runs on"):
                address_to_script(address, dst)


@given(program=st.binary(min_size=32, max_size=32), index=st.integers(min_value=0), data=st.data())
def test_one_substituted_character_is_caught(
    program: bytes, index: int, data: st.DataObject
) -> None:
    address = script_to_address(witness(1, program), "main")
    pos = 3 + index % (len(address) - 3)  # somewhere after "bc1"
    replacement = data.draw(
        st.sampled_from("qpzry9x8gf2tvdw0s3jn54khce6mua7l".replace(address[pos], ""))
    )
    with pytest.raises(AddressError):
        address_to_script(address[:pos] + replacement + address[pos + 1 :], "main")
