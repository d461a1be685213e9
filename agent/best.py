"""What "the best candidate" of a run means, defined once: the correct candidate with the
highest fitness (`agent.selection.fitness`: 1 + its speedup over the baseline), the earliest
among equals. The archive's totals, `best.py`, the end-of-run re-timing, the stop rules and
every command that shows a run's best all ask this module."""

from __future__ import annotations

from typing import Iterable, TypeVar

R = TypeVar("R")  # a CandidateRecord, or anything with id, verdict_status and fitness


def rank_key(record) -> tuple[float, int]:
    """Sort key of a correct candidate, larger is better: (fitness, -id)."""
    return (record.fitness or 0.0, -record.id)


def best_candidate(records: Iterable[R]) -> R | None:
    """The best of `records` (candidate records in any order): the correct one with the highest
    fitness, the lowest id among equals; None when none is correct."""
    return max((r for r in records if r.verdict_status == "correct"), key=rank_key, default=None)
