"""Every table of every concern on one MetaData, for migrations and tests.

Concerns define their tables next to their code; importing them here registers
them on `hashquarry.store.models.metadata`.
"""

from __future__ import annotations

import hashquarry.accounts.tables
import hashquarry.distribution.tables
import hashquarry.payouts.tables
from hashquarry.store.models import metadata

# Imported for their side effect: the tables they define join `metadata`.
_REGISTERED = (
    hashquarry.accounts.tables,
    hashquarry.distribution.tables,
    hashquarry.payouts.tables,
)

__all__ = ["metadata"]
