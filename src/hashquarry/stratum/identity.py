"""Who is mining: `account.worker` or `payoutaddress.worker`, and what the password asks for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hashquarry.chain.address import Network, is_valid_address

ACCOUNT_RE = re.compile(r"[a-z][a-z0-9]{1,14}")
WORKER_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
DEFAULT_WORKER = "default"


class IdentityError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Identity:
    account: str  # an account name, or a payout address in address mode
    worker: str
    address_mode: bool


def parse_username(username: str, network: Network) -> Identity:
    if not isinstance(username, str) or not username:
        raise IdentityError("user name is empty")
    if len(username) > 160:
        raise IdentityError("user name is longer than 160 characters")
    account, _, worker = username.partition(".")
    worker = worker or DEFAULT_WORKER
    if not WORKER_RE.fullmatch(worker):
        raise IdentityError(f"worker name {worker!r} must be 1-64 letters, digits, '_' or '-'")
    if ACCOUNT_RE.fullmatch(account):
        return Identity(account=account, worker=worker, address_mode=False)
    if is_valid_address(account, network):
        return Identity(account=account, worker=worker, address_mode=True)
    raise IdentityError(
        f"{account!r} is neither an account name (2-15 lowercase letters or digits, starting "
        f"with a letter) nor a valid {network.name} payout address"
    )


def parse_password(password: str) -> float | None:
    """The fixed difficulty a password asks for with `d=N`, if any; other tokens are ignored."""
    if not isinstance(password, str):
        return None
    for token in re.split(r"[,;\s]+", password):
        key, sep, value = token.partition("=")
        if sep and key.strip().lower() == "d":
            try:
                d = float(value)
            except ValueError:
                raise IdentityError(f"password d={value!r} is not a number") from None
            if not d > 0 or d != d or d == float("inf"):
                raise IdentityError(f"password d={value!r} must be a positive number")
            return d
    return None
