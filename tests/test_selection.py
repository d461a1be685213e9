"""The selection policy, on hand-made candidate records with real Verdict objects."""

from __future__ import annotations

from collections import Counter

import pytest

from kagent.agent.archive import CandidateRecord
from kagent.agent.selection import Choice, IslandPolicy, fitness
from kagent.sandbox.models import Verdict


def verdict(status: str, speedup: float | None = None, meaningful: bool = True) -> Verdict:
    return Verdict(status=status, reason="ok" if status == "correct" else status, message=status, backend="triton",
                   device="cuda", speedup=speedup if status == "correct" else None,
                   timing_meaningful=meaningful and status == "correct")


class Records:
    """A growing list of candidate records, as the archive would return them."""

    def __init__(self):
        self.items: list[CandidateRecord] = []

    def add(self, island: int, operation: str = "draft", parent: int | None = None, v: Verdict | None = None,
            iteration: int | None = None, source_hash: str | None = None, status: str | None = None) -> int:
        cid = len(self.items) + 1
        self.items.append(CandidateRecord(
            id=cid, iteration=len(self.items) if iteration is None else iteration, island=island, parent_id=parent,
            operation=operation, source_hash=source_hash or f"h{cid}",
            status=status or ("evaluated" if v else "pending"), verdict=v,
            verdict_status=v.status if v else None, speedup=v.speedup if v else None,
            fitness=fitness(v) if v else None,
        ))
        return cid

    def apply(self, choice: Choice, v: Verdict | None, iteration: int) -> int:
        return self.add(choice.island, choice.operation, choice.parent_id, v, iteration)

    def __getitem__(self, cid: int) -> CandidateRecord:
        return self.items[cid - 1]


def test_fitness_orders_correctness_before_speed():
    assert fitness(verdict("correct", 2.0)) == 3.0
    assert fitness(verdict("correct", None, meaningful=False)) == 2.0
    assert fitness(verdict("correct", 0.3)) == pytest.approx(1.3)
    failures = [fitness(verdict(s)) for s in ("incorrect", "runtime_error", "compile_error", "rejected")]
    assert failures == sorted(failures, reverse=True)
    assert all(0 <= f < 0.5 for f in failures) and failures[-1] == 0.0
    assert fitness(verdict("compile_error")) > 0


def test_draft_when_empty():
    choice = IslandPolicy().choose([], 0)
    assert (choice.operation, choice.island, choice.parent_id, choice.inspiration_ids) == ("draft", 0, None, [])


def test_pending_and_no_code_are_never_picked():
    records = Records()
    records.add(0, status="pending")
    records.add(0, status="no_code")
    choice = IslandPolicy(num_islands=1).choose(records.items, 2)
    assert choice.operation == "draft" and choice.inspiration_ids == []


def test_refine_picks_the_best_correct_parent():
    records = Records()
    records.add(0, v=verdict("compile_error"))
    slow = records.add(0, v=verdict("correct", 0.8))
    fast = records.add(0, v=verdict("correct", 5.0))
    policy = IslandPolicy(num_islands=1, elite_size=1)
    choice = policy.choose(records.items, 3)
    assert (choice.operation, choice.parent_id) == ("refine", fast)
    assert choice.inspiration_ids == [slow]  # the other correct one, never the parent or a failure


def test_refine_spreads_over_elites_and_skips_duplicate_sources():
    records = Records()
    best = records.add(0, v=verdict("correct", 3.0), source_hash="same")
    records.add(0, v=verdict("correct", 3.0), source_hash="same")  # the same source again: counts once
    second = records.add(0, v=verdict("correct", 2.5))
    policy = IslandPolicy(num_islands=1, elite_size=3, seed=1)
    parents = Counter()
    for iteration in range(3, 23):
        choice = policy.choose(records.items, iteration)
        parents[choice.parent_id] += 1
        records.apply(choice, verdict("compile_error"), iteration)
    assert set(parents) == {best, second}


def test_failures_are_not_picked_repeatedly_over_a_run():
    outcomes = ["compile_error", "incorrect", "correct", "runtime_error", "incorrect", "rejected", "correct",
                "timeout"]
    records = Records()
    policy = IslandPolicy(num_islands=2, max_repairs=2, seed=7)
    for iteration in range(20):
        choice = policy.choose(records.items, iteration)
        if choice.parent_id is not None:
            parent = records[choice.parent_id]
            assert parent.status == "evaluated"
            if choice.operation == "refine":
                assert parent.verdict_status == "correct"
            else:
                assert choice.operation == "repair" and parent.verdict_status in ("incorrect", "runtime_error")
        status = outcomes[iteration % len(outcomes)]
        records.apply(choice, verdict(status, 1.0 + iteration / 10), iteration)
    children = Counter(c.parent_id for c in records.items if c.parent_id is not None)
    for cid, count in children.items():
        if records[cid].verdict_status != "correct":
            assert count <= 2
    ops = Counter(c.operation for c in records.items)
    assert ops["refine"] > 0 and ops["draft"] > 0


def test_repair_for_a_promising_failure_at_most_max_repairs():
    records = Records()
    parent = records.add(0, v=verdict("correct", 1.5))
    broken = records.add(0, "refine", parent, verdict("incorrect"))
    policy = IslandPolicy(num_islands=1, max_repairs=2)
    choices = []
    for iteration in range(2, 6):
        choice = policy.choose(records.items, iteration)
        choices.append((choice.operation, choice.parent_id))
        records.apply(choice, verdict("runtime_error"), iteration)
    # Two repairs of the failure (the second failed repair is not the best failure, so it is not
    # repaired in turn), then back to refining the correct parent.
    assert choices[:2] == [("repair", broken), ("repair", broken)]
    assert choices[2] == ("refine", parent)


def test_repairs_of_repairs_share_the_budget():
    records = Records()
    failure = records.add(0, v=verdict("incorrect"))  # the best failure so far, from a draft
    first = records.add(0, "repair", failure, verdict("incorrect"))
    policy = IslandPolicy(num_islands=1, max_repairs=2)
    choice = policy.choose(records.items, 2)
    assert (choice.operation, choice.parent_id) == ("repair", failure)
    records.add(0, "repair", first, verdict("incorrect"))
    assert policy.choose(records.items, 3).operation == "draft"


def test_unpromising_failures_are_not_repaired():
    records = Records()
    records.add(0, v=verdict("compile_error"))  # did not compile
    records.add(0, v=verdict("rejected"))  # cheated
    best = records.add(0, v=verdict("runtime_error"))
    records.add(0, v=verdict("runtime_error"))  # a failure from a draft, not the best one
    choice = IslandPolicy(num_islands=1).choose(records.items, 4)
    assert (choice.operation, choice.parent_id) == ("repair", best)
    records.add(0, "repair", best, verdict("compile_error"))
    records.add(0, "repair", best, verdict("compile_error"))
    assert IslandPolicy(num_islands=1).choose(records.items, 6).operation == "draft"


def test_islands_alternate_and_evolve_separately():
    records = Records()
    good = records.add(0, v=verdict("correct", 2.0), iteration=0)
    policy = IslandPolicy(num_islands=2, migration_interval=4)
    choice = policy.choose(records.items, 1)
    assert (choice.operation, choice.island) == ("draft", 1)
    assert choice.inspiration_ids == [good]  # inspirations cross islands
    choice = policy.choose(records.items, 2)
    assert (choice.operation, choice.island, choice.parent_id) == ("refine", 0, good)


def test_migration_makes_the_best_eligible_on_the_next_island():
    records = Records()
    records.add(0, v=verdict("correct", 1.2), iteration=0)
    best0 = records.add(0, v=verdict("correct", 2.0), iteration=2)
    records.add(1, v=verdict("compile_error"), iteration=1)
    records.add(1, v=verdict("compile_error"), iteration=3)
    policy = IslandPolicy(num_islands=2, elite_size=3, migration_interval=4)
    assert policy.choose(records.items, 3).operation == "draft"  # before the migration
    assert [c.id for c in policy.migrants(records.items, 1, 4)] == [best0]
    choice = policy.choose(records.items, 5)
    assert (choice.operation, choice.island, choice.parent_id) == ("refine", 1, best0)
    # The next event (iteration 8) goes the other way: island 1's best to island 0.
    from_1 = records.add(1, "refine", best0, verdict("correct", 4.0), iteration=5)
    assert [c.id for c in policy.migrants(records.items, 0, 7)] == []
    assert [c.id for c in policy.migrants(records.items, 0, 8)] == [from_1]


def test_inspirations_are_strong_diverse_and_exclude_the_parent():
    records = Records()
    parent = records.add(0, v=verdict("correct", 3.0))
    child = records.add(0, "refine", parent, verdict("correct", 2.9))
    other = records.add(1, v=verdict("correct", 1.5))
    other_child = records.add(1, "refine", other, verdict("correct", 1.4))
    weak = records.add(1, v=verdict("correct", 1.1))
    choice = IslandPolicy(num_islands=2, elite_size=1).choose(records.items, 0)
    assert choice.parent_id == parent
    # From the other island first; `other_child` is skipped as a relative of `other`.
    assert choice.inspiration_ids == [other, weak]
    assert child not in choice.inspiration_ids and other_child not in choice.inspiration_ids


def test_same_seed_same_choices_and_seed_matters():
    def simulate(seed: int) -> list[tuple]:
        records = Records()
        policy = IslandPolicy(num_islands=2, elite_size=3, seed=seed)
        out = []
        for iteration in range(24):
            choice = policy.choose(records.items, iteration)
            out.append((choice.operation, choice.island, choice.parent_id, tuple(choice.inspiration_ids)))
            status = "correct" if iteration % 3 else "incorrect"
            records.apply(choice, verdict(status, 1.0 + (iteration * 7 % 5) / 4), iteration)
        return out

    assert simulate(3) == simulate(3)
    assert any(simulate(seed) != simulate(3) for seed in range(4, 10))
    # Resume: a fresh policy on the same records makes the same choice, whatever their order.
    records = Records()
    for i in range(6):
        records.add(i % 2, v=verdict("correct", 1 + i / 3))
    a = IslandPolicy(seed=5).choose(records.items, 6)
    b = IslandPolicy(seed=5).choose(list(reversed(records.items)), 6)
    assert a == b


def test_no_more_repairs_once_a_repair_is_correct():
    records = Records()
    parent = records.add(0, v=verdict("correct", 1.5))
    broken = records.add(0, "refine", parent, verdict("incorrect"))
    fixed = records.add(0, "repair", broken, verdict("correct", 1.8))
    choice = IslandPolicy(num_islands=1, max_repairs=2, elite_size=1).choose(records.items, 3)
    assert (choice.operation, choice.parent_id) == ("refine", fixed)


def test_an_error_verdict_is_not_evaluated_no_parent_no_repair():
    """Status error (kagent failed, e.g. Ctrl-C killed the evaluation) has no fitness: never a
    parent, never repaired, never an inspiration, even when it is the only candidate."""
    assert fitness(verdict("error")) is None
    records = Records()
    failed = records.add(0, v=verdict("error"))
    assert records[failed].fitness is None
    for iteration in range(1, 6):
        choice = IslandPolicy().choose(records.items, iteration)
        assert choice.operation == "draft" and choice.parent_id is None and failed not in choice.inspiration_ids
