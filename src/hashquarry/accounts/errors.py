"""Errors of the accounts service: each names the request field at fault and the reason.

Field names are f2pool's (`mining_user_name`, `currency`, `address`, ...) so the API edge
can pass them through unchanged; the subclasses let it pick a status without parsing text.
"""

from __future__ import annotations


class AccountsError(ValueError):
    """Bad input for an accounts operation; nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFoundError(AccountsError):
    """The thing does not exist *for this owner*: another owner's user, key or page is
    reported exactly like a missing one, so an owner cannot probe for other owners' names."""


class ConflictError(AccountsError):
    """The request clashes with the current state (name taken, key already revoked)."""
