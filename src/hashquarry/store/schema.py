"""Every table of every concern on one MetaData, for migrations and tests.

Concerns define their tables next to their code; importing them here registers
them on `hashquarry.store.models.metadata`.
"""

from __future__ import annotations

import hashquarry.payouts.tables
from hashquarry.store.models import metadata

with_accounts = True
try:
    import hashquarry.accounts.tables  # noqa: F401
except ModuleNotFoundError:  # the accounts concern is optional while it is being built
    with_accounts = False

__all__ = ["metadata"]
