"""One block's reward when accounts are in different settle modes (pure, exact integers).

A coin has a default scheme (PPLNS, PPS, FPPS, PROP or SOLO) and every account may
switch to any of the five from an activation time on (accounts.settle). A share is
under the mode its account was in *when the share was mined*: a switch never reaches
back, so shares already paid per share (PPS/FPPS) are never paid again by a block,
and shares mined under PPLNS/PROP keep their claim on the next blocks after a switch.

The rule for a block found by share ``s`` of account ``F`` (``F`` in mode ``M_F``):

1. ``M_F`` is SOLO: the finder mined for itself, so the block is ``F``'s alone: ``F`` is
   credited the reward less the fee, nobody else anything.

2. Otherwise the block is the pool's, i.e. the work of every share not in SOLO mode.
   SOLO-mode shares take no part: their accounts' blocks are their own, so counting
   their shares in would hand part of the pool's blocks to work that never finds
   blocks for the pool, and pay the pool's miners less than their work earns.

3. The reward is split exactly (largest remainder) over the *basis*, the coin's
   block measure per (account, mode): the PROP round (every pool share since the
   previous block) on a PROP coin, the PPLNS window (the last N x network difficulty
   of pool work) on every other coin. That says how much of the block each group
   of modes earned with its work:

   - PPS/FPPS parts are **retained** by the pool: those accounts were paid per share
     already and the pool stands in for them, so nobody is paid twice and no PPLNS or
     PROP miner is paid for work it did not do. No fee is charged on them (the fee
     was taken from every per-share value).
   - The PPLNS parts and the PROP parts form a pot per group. The fee (``fee_bps``,
     rounded down) is taken from each pot; the rest is split inside the group by
     the group's own rule: PPLNS accounts by their weight in the window, PROP
     accounts by their weight in the round (counting only shares mined in that
     mode). For the group whose rule *is* the basis this is the basis split itself,
     so on a pure PPLNS or PROP coin nothing changes. A group with no weight under
     its own rule (PROP shares in the window but all before this round) splits its
     pot by its basis weights instead, so work that earned a part is always paid.

Why a basis first: each rule alone gives every account a fraction of the block, but
fractions measured over different work (a PPLNS miner's part of the window, a PROP
miner's part of the round) can add up to more than the whole block. One measure
first gives each group the part its work earned, never more than the reward in
total; each group then keeps its own rule among its members. A PPLNS account on a
PPLNS coin therefore gets what pure PPLNS gives it, whatever modes others are in
(up to the rounding of its group's fee).

Every step splits an amount into integer parts that sum to it, so

    sum(credits.per_account) + credits.fee + credits.retained == reward

holds exactly for every block, every mix of modes and every reward.
"""

from __future__ import annotations

from collections.abc import Mapping

from hashquarry.accounting.schemes import Credits, apply_fee, solo_credits, split_exact

MODES = ("pplns", "prop", "solo", "pps", "fpps")
BLOCK_MODES = ("pplns", "prop", "solo")  # credited from blocks
SHARE_MODES = ("pps", "fpps")  # paid per share by the pool
POOL_GROUPS = ("pplns", "prop")  # block modes that share the pool's blocks

Key = tuple[str, str]  # (account, mode the share was mined in)


def basis_of(coin_scheme: str) -> str:
    """What the pool's blocks on a coin are split by first: "round" or "window"."""
    _check_mode("coin_scheme", coin_scheme)
    return "round" if coin_scheme == "prop" else "window"


def _check_mode(name: str, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"{name} must be one of {', '.join(MODES)}, got {mode!r}")


def _pool_weights(name: str, weights: Mapping[Key, int]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for key, weight in weights.items():
        account, mode = key
        _check_mode(f"{name}[{account!r}]", mode)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"{name}[{key!r}] must be a non-negative int, got {weight!r}")
        if mode != "solo" and weight:  # SOLO shares never share a pool block (rule 2)
            out[key] = weight
    return out


def split_block(
    reward: int,
    fee_bps: int,
    *,
    finder: str,
    finder_mode: str,
    basis: str,
    window: Mapping[Key, int],
    round_: Mapping[Key, int],
) -> Credits:
    """Credits, fee and pool remainder of one block (see the module docstring).

    ``window`` and ``round_`` are share weights (``schemes.share_weight``) per
    (account, mode) in the PPLNS window and in the block's round; SOLO-mode keys are
    ignored. ``basis`` is ``basis_of(coin scheme)``. An empty basis (the store no
    longer holds the shares) falls back to the finder's own share, the one piece
    of work every block is known to have.
    """
    _check_mode("finder_mode", finder_mode)
    if basis not in ("window", "round"):
        raise ValueError(f"basis must be 'window' or 'round', got {basis!r}")
    if finder_mode == "solo":
        return solo_credits(finder, reward, fee_bps)
    own = {"pplns": _pool_weights("window", window), "prop": _pool_weights("round_", round_)}
    weights = own["pplns"] if basis == "window" else own["prop"]
    if not weights:
        weights = {(finder, finder_mode): 1}
    gross = split_exact(reward, weights)

    retained = sum(part for (_, mode), part in gross.items() if mode in SHARE_MODES)
    per_account: dict[str, int] = {}
    fee = 0
    for group in POOL_GROUPS:
        pot = sum(part for (_, mode), part in gross.items() if mode == group)
        basis_members = {a: w for (a, mode), w in weights.items() if mode == group}
        if not basis_members:
            continue  # the group did no work in the basis: no part of this block
        net, group_fee = apply_fee(pot, fee_bps)
        fee += group_fee
        members: dict[str, int] = {}
        for (account, mode), w in own[group].items():
            if mode == group:
                members[account] = members.get(account, 0) + w
        for account, part in split_exact(net, members or basis_members).items():
            per_account[account] = per_account.get(account, 0) + part
    return Credits(dict(sorted(per_account.items())), fee, retained)
