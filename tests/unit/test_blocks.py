"""The block lifecycle rule (accounting.blocks.next_state), as a table.

Rows: what the block was, what the node says (known? confirmations, -1 on a side
branch), how old it is, what submitblock answered -> what it becomes and how many
confirmations are left (-1 once off the chain).
"""

from __future__ import annotations

import pytest

from hashquarry.accounting.blocks import GRACE_SECONDS, NodeView, next_state

MATURITY = 100
ON = NodeView(True, 1)
SIDE = NodeView(True, -1)  # the node has it, not on its main chain
UNKNOWN = NodeView(False, 0)
YOUNG, OLD = 10.0, GRACE_SECONDS + 1


@pytest.mark.parametrize(
    ("status", "view", "age", "submit", "expected"),
    [
        # on the main chain: unconfirmed until `maturity` confirmations
        ("processing", ON, YOUNG, None, ("unconfirmed", 99)),
        ("processing", NodeView(True, 100), YOUNG, "accepted", ("confirmed", 0)),
        ("processing", NodeView(True, 150), OLD, None, ("confirmed", 0)),  # pool was down
        ("unconfirmed", NodeView(True, 50), OLD, "accepted", ("unconfirmed", 50)),
        ("unconfirmed", NodeView(True, 99), OLD, None, ("unconfirmed", 1)),
        ("unconfirmed", NodeView(True, 100), OLD, None, ("confirmed", 0)),
        # a side branch: it was on the chain (orphan) or never made it (stale)
        ("unconfirmed", SIDE, OLD, "accepted", ("orphan", -1)),
        ("processing", SIDE, YOUNG, None, ("stale", -1)),
        ("processing", SIDE, YOUNG, "inconclusive", ("stale", -1)),
        # unknown to the node: wait out the grace period unless the node said no
        ("processing", UNKNOWN, YOUNG, None, ("processing", MATURITY)),
        ("processing", UNKNOWN, YOUNG, "accepted", ("processing", MATURITY)),
        ("processing", UNKNOWN, YOUNG, "inconclusive", ("processing", MATURITY)),
        ("processing", UNKNOWN, YOUNG, "duplicate-inconclusive", ("processing", MATURITY)),
        ("processing", UNKNOWN, YOUNG, "high-hash", ("stale", -1)),
        ("processing", UNKNOWN, YOUNG, "bad-cb-amount", ("stale", -1)),
        ("processing", UNKNOWN, OLD, None, ("stale", -1)),
        ("processing", UNKNOWN, OLD, "accepted", ("stale", -1)),
        ("unconfirmed", UNKNOWN, YOUNG, "accepted", ("orphan", -1)),  # the node lost it
        # off the chain: stays so until the node has it on its main chain again
        ("orphan", SIDE, OLD, "accepted", ("orphan", -1)),
        ("orphan", UNKNOWN, OLD, "accepted", ("orphan", -1)),
        ("stale", SIDE, OLD, None, ("stale", -1)),
        ("stale", UNKNOWN, YOUNG, "high-hash", ("stale", -1)),
        # ... and back after a reorg (reconsiderblock): immature again, then confirmed
        ("orphan", NodeView(True, 3), OLD, "accepted", ("unconfirmed", 97)),
        ("orphan", NodeView(True, 100), OLD, "accepted", ("confirmed", 0)),
        ("stale", NodeView(True, 2), OLD, None, ("unconfirmed", 98)),
        # confirmed is final: its balance may have been paid out
        ("confirmed", SIDE, OLD, None, ("confirmed", 0)),
        ("confirmed", UNKNOWN, OLD, None, ("confirmed", 0)),
        ("confirmed", NodeView(True, 500), OLD, None, ("confirmed", 0)),
    ],
)
def test_next_state(
    status: str, view: NodeView, age: float, submit: str | None, expected: tuple[str, int]
) -> None:
    assert next_state(status, view, MATURITY, age, submit) == expected


def test_maturity_of_one_confirms_at_once() -> None:
    assert next_state("processing", ON, 1, YOUNG, None) == ("confirmed", 0)
    assert next_state("orphan", ON, 1, OLD, None) == ("confirmed", 0)
