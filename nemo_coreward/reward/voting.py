"""Majority vote over answer classes.

Empty answers (class -1) never vote. Ties go to the class whose first vote comes
earliest in the pool's order, which is what ``collections.Counter.most_common`` does in
the official Co-Reward code for insertion-ordered answers; ours is deterministic because
the pool's order is the caller's rollout order, not a load-balanced batch order.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Vote:
    """Winning class (-1 when every answer was empty), its votes and the pool size."""

    winner: int
    votes: int
    total: int

    @property
    def ratio(self) -> float:
        """Share of the pool (empty answers included) that voted for the winner."""
        return self.votes / self.total if self.total else 0.0


def majority_vote(class_ids: Sequence[int]) -> Vote:
    counts: dict[int, int] = {}
    for c in class_ids:  # dicts keep first-insertion order: ties resolve to the earliest
        if c >= 0:
            counts[c] = counts.get(c, 0) + 1
    if not counts:
        return Vote(-1, 0, len(class_ids))
    winner = max(counts, key=counts.__getitem__)  # max returns the first maximal key
    return Vote(winner, counts[winner], len(class_ids))
