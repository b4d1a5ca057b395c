"""Input rules (pure): mining-user and owner names, currencies, wallet addresses, thresholds.

The mining-user rule is f2pool's (2-15 lowercase letters or digits, beginning with a
letter), and it must agree exactly with `stratum.identity.ACCOUNT_RE`: a name accepted
here but not there could never mine (the tests check the two against each other).

Currencies are f2pool's names. Which ones this pool pays, and on which network, is a
mapping handed in (`{"bitcoin": "main"}` in production, `{"bitcoin": "regtest"}` in the
demo), so a testnet address for a mainnet pool is refused with a message saying so.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from hashquarry.accounts.errors import AccountsError
from hashquarry.chain.address import (
    NETWORKS,
    AddressError,
    address_to_script,
    network,
    script_to_address,
)

NAME_MIN, NAME_MAX = 2, 15
# No more than all the bitcoin there will ever be: catches unit mistakes (a threshold in
# millisatoshi, say) and keeps every value inside a signed 64-bit column.
MAX_MONEY = 21_000_000 * 100_000_000
_LOWER = frozenset(string.ascii_lowercase)
# ASCII only: str.isdigit() and str.islower() accept other scripts, ACCOUNT_RE does not.
_LOWER_OR_DIGIT = _LOWER | frozenset(string.digits)
_OWNER_EXTRA = frozenset("-_")
OWNER_MAX = 64
DESCRIPTION_MAX = 256

# The currencies f2pool's API names (its own list, plus bitcoin-sv, which the regtest node
# of the demo runs). Informational: the network mapping decides what this pool pays.
F2POOL_CURRENCIES = frozenset(
    {
        "bitcoin", "aleo", "alephium", "bells-mm", "bitcion", "bitcoin-cash", "bitcoin-sv",
        "conflux", "dash", "elacoin", "ethereum-classic", "ethw", "fractal-bitcoin",
        "fractal-bitcoin-mm", "hathor", "ironfish", "junkcoin", "kadena", "kaspa", "litecoin",
        "luckycoin", "nervos", "nexa", "nmccoin", "pepecoin", "zcash", "zen", "dingocoin",
        "craftcoin", "elastos", "quai", "shibacoin", "canxium",
    }
)  # fmt: skip


def mining_user_name_problem(name: object) -> str | None:
    """Which rule the name breaks, or None if it is a valid mining-user name."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not NAME_MIN <= len(name) <= NAME_MAX:
        return f"is {len(name)} characters long; {NAME_MIN}-{NAME_MAX} are allowed"
    if name[0] not in _LOWER:
        return f"begins with {name[0]!r}; it must begin with a lowercase letter a-z"
    bad = next((c for c in name if c not in _LOWER_OR_DIGIT), None)
    if bad is not None:
        return f"contains {bad!r}; only lowercase letters a-z and digits 0-9 are allowed"
    return None


def check_mining_user_name(name: object, field: str = "mining_user_name") -> str:
    problem = mining_user_name_problem(name)
    if problem is not None:
        raise AccountsError(field, f"{name!r} {problem}")
    assert isinstance(name, str)
    return name


def check_owner_name(name: object) -> str:
    """Owners are operator-side names (not on the wire to miners): a little more liberal."""
    if not isinstance(name, str) or not name:
        raise AccountsError("owner", "an owner name is needed")
    if len(name) > OWNER_MAX:
        raise AccountsError("owner", f"is {len(name)} characters long; at most {OWNER_MAX}")
    if name[0] not in _LOWER:
        raise AccountsError("owner", f"{name!r} must begin with a lowercase letter a-z")
    bad = next((c for c in name if c not in _LOWER_OR_DIGIT | _OWNER_EXTRA), None)
    if bad is not None:
        raise AccountsError(
            "owner", f"{name!r} contains {bad!r}; only a-z, 0-9, '-' and '_' are allowed"
        )
    return name


def check_description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise AccountsError("description", "must be a string")
    if len(description) > DESCRIPTION_MAX:
        raise AccountsError(
            "description", f"is {len(description)} characters long; at most {DESCRIPTION_MAX}"
        )
    if any(not c.isprintable() for c in description):
        raise AccountsError("description", "contains a control character")
    return description


def check_networks(networks: Mapping[str, str]) -> dict[str, str]:
    """Validate the currency -> network mapping once, when the service is built."""
    if not networks:
        raise ValueError("at least one currency must be configured (e.g. {'bitcoin': 'main'})")
    for currency, net in networks.items():
        if not isinstance(currency, str) or not currency:
            raise ValueError(f"currency name {currency!r} must be a non-empty string")
        if net not in NETWORKS:
            raise ValueError(
                f"currency {currency!r}: unknown network {net!r} (known: {', '.join(NETWORKS)})"
            )
    return dict(networks)


def currency_network(currency: object, networks: Mapping[str, str]) -> str:
    """The address network of a currency this pool pays; AccountsError(field="currency")."""
    if not isinstance(currency, str) or not currency:
        raise AccountsError("currency", "a currency is needed, e.g. 'bitcoin'")
    net = networks.get(currency)
    if net is None:
        paid = ", ".join(sorted(networks))
        if currency in F2POOL_CURRENCIES:
            reason = f"{currency!r} is not mined on this pool (it pays: {paid})"
        else:
            reason = f"unknown currency {currency!r} (this pool pays: {paid})"
        raise AccountsError("currency", reason)
    return net


def normalize_address(currency: str, address: object, networks: Mapping[str, str]) -> str:
    """The canonical form of a payout address valid on the currency's network.

    Canonical means re-encoded from its script: bech32 in lowercase, so the same wallet is
    never stored (or paid) under two spellings. Raises AccountsError(field="address") with
    chain.address's reason, which names the network an address belongs to when it is
    another one (e.g. "is for testnet, but the pool runs on mainnet").
    """
    net = currency_network(currency, networks)
    if not isinstance(address, str):
        raise AccountsError("address", f"must be a string, not {type(address).__name__}")
    try:
        script = address_to_script(address, net)
    except AddressError as exc:
        raise AccountsError("address", f"{exc} (currency {currency})") from None
    return script_to_address(script, network(net))


def address_on(account: str, net: str) -> str | None:
    """The canonical address if a ledger account name is a payout address on `net`.

    Used for address mode: a miner that authorized with an address as its user name has
    its balance under that address, and is paid to it.
    """
    try:
        return script_to_address(address_to_script(account, net), network(net))
    except AddressError:
        return None


def check_threshold(threshold: object, minimum: int = 0) -> int:
    """A payout threshold in integer base units (satoshis), `minimum` to MAX_MONEY."""
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise AccountsError(
            "threshold",
            f"must be an integer number of base units (satoshis), not {threshold!r}",
        )
    if threshold < minimum:
        raise AccountsError(
            "threshold", f"{threshold} is below the minimum of {minimum} base units"
        )
    if threshold > MAX_MONEY:
        raise AccountsError(
            "threshold", f"{threshold} is above {MAX_MONEY} base units (21 million coins)"
        )
    return threshold
