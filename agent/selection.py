"""The selection policy: what the Coder does next, given every candidate so far.

Islands. Iteration i works on island `i % num_islands`; each island evolves its own line of
kernels, which keeps the search from collapsing onto one idea. Every `migration_interval`
iterations one island's best correct candidate becomes eligible as a parent on the next island
(the source island rotates: event k sends island (k-1) % n to island k % n).

Each turn is one of:
- repair: a promising failure gets another try with the Judge's diagnosis. Promising means it
  compiled but was incorrect or had a runtime error, and either its parent was correct or it is
  the best failure of the whole run so far. A failure, counting the repairs of its repairs, gets
  at most `max_repairs` attempts, and none once one of them came out correct.
- refine: build on a correct candidate among the island's elites (its `elite_size` best distinct
  sources, migrants included), drawn with probability proportional to fitness and divided by
  1 + the number of children it already has, so the search spreads over the elites.
- draft: write one from scratch, when the island has nothing correct to build on.

Failures are never refine parents; pending, no-code and `error` candidates (kagent failed, not
the kernel: they have no fitness) are never picked, and
identical sources (deduplicated by hash upstream) count once. The policy is a pure function of
the records, the iteration and the seed, so a resumed run makes the same choices.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from kagent.agent.archive import CandidateRecord
from kagent.sandbox import Verdict

# Fitness of a candidate that is not correct, by status: each below every correct candidate
# (>= 1), compiled-but-wrong above what did not compile, cheating at zero.
FAILURE_FITNESS = {
    "incorrect": 0.4,
    "runtime_error": 0.3,
    "timeout": 0.25,
    "not_run": 0.2,
    "compile_error": 0.1,
    "rejected": 0.0,
}
REPAIRABLE = frozenset({"incorrect", "runtime_error"})


def fitness(verdict: Verdict, baseline: str = "compile") -> float | None:
    """Correctness first, then speed: a correct candidate scores 1 + speedup (speedup taken as
    1.0 when the timing is not meaningful); any other verdict scores below 0.5. None for status
    `error` (kagent failed, not the kernel): not evaluated, so never a parent nor a repair target.
    `baseline` "compile" scores the speedup over torch.compile where the verdict has one (the
    task compiled), "eager" the speedup over eager PyTorch."""
    if verdict.status == "error":
        return None
    if verdict.status != "correct":
        return FAILURE_FITNESS.get(verdict.status, 0.0)
    speedup = verdict.speedup
    if baseline == "compile" and verdict.speedup_vs_compile is not None:
        speedup = verdict.speedup_vs_compile
    if verdict.timing_meaningful and speedup is not None:
        return 1.0 + max(speedup, 0.0)
    return 2.0


@dataclass
class Choice:
    """What the Coder does next: `operation` on `island`, building on `parent_id` (None for a
    draft), shown the candidates `inspiration_ids` for ideas."""

    operation: Literal["draft", "refine", "repair"]
    island: int
    parent_id: int | None
    inspiration_ids: list[int] = field(default_factory=list)


def _is_correct(c: CandidateRecord) -> bool:
    return c.status == "evaluated" and c.verdict_status == "correct" and c.fitness is not None


def _rank(c: CandidateRecord) -> tuple:
    """Sort key, best first: higher fitness, then the earlier candidate."""
    return (-(c.fitness or 0.0), c.id)


def _distinct(cands: list[CandidateRecord]) -> list[CandidateRecord]:
    """Best first, one per source hash."""
    seen: set[str] = set()
    out = []
    for c in sorted(cands, key=_rank):
        if c.source_hash is not None:
            if c.source_hash in seen:
                continue
            seen.add(c.source_hash)
        out.append(c)
    return out


class SelectionPolicy:
    """The selection seam: given every candidate so far, what the Coder does next.

    `choose(records, iteration) -> Choice` must be a pure function of the records (every
    candidate of the run, any order, pending ones included), the iteration (0, 1, ...) and the
    policy's own settings, so that a resumed run makes the same choices. Adding a policy is one
    class plus one line in `POLICIES`; `from_config` builds it from a RunConfig (`policy`)."""

    name: str = ""

    @classmethod
    def from_config(cls, config) -> "SelectionPolicy":
        """The policy a run with `config` (a RunConfig) uses; the default takes only its seed."""
        return cls()

    def choose(self, candidates: list[CandidateRecord], iteration: int) -> Choice:
        """The next operation; raises nothing for any list of records."""
        raise NotImplementedError


class IslandPolicy(SelectionPolicy):
    """Islands with elites, migration and repairs (this module's docstring); the default."""

    name = "islands"

    @classmethod
    def from_config(cls, config) -> "IslandPolicy":
        """Islands, elite size, migration interval, repair limit and seed from a RunConfig."""
        return cls(num_islands=config.islands, elite_size=config.elite_size,
                   migration_interval=config.migration_interval, max_repairs=config.max_repairs, seed=config.seed)

    def __init__(self, num_islands: int = 2, elite_size: int = 3, migration_interval: int = 4,
                 max_repairs: int = 2, seed: int = 0):
        if num_islands < 1 or elite_size < 1:
            raise ValueError("num_islands and elite_size must be at least 1")
        self.num_islands = num_islands
        self.elite_size = elite_size
        self.migration_interval = migration_interval
        self.max_repairs = max_repairs
        self.seed = seed

    def island_for(self, iteration: int) -> int:
        """The island iteration `iteration` works on."""
        return iteration % self.num_islands

    def choose(self, candidates: list[CandidateRecord], iteration: int) -> Choice:
        """Repair a promising failure, else refine an elite of this iteration's island, else draft."""
        cands = sorted(candidates, key=lambda c: c.id)
        island = self.island_for(iteration)
        rng = random.Random(f"{self.seed}:{iteration}")

        repair = self._repair_target(cands, island)
        if repair is not None:
            return Choice("repair", island, repair.id, self._inspirations(cands, island, repair))

        elites = self.elites(cands, island, iteration)
        if not elites:
            return Choice("draft", island, None, self._inspirations(cands, island, None))

        children = Counter(c.parent_id for c in cands if c.parent_id is not None)
        weights = [(c.fitness or 0.0) / (1 + children[c.id]) for c in elites]
        parent = rng.choices(elites, weights=weights)[0]
        return Choice("refine", island, parent.id, self._inspirations(cands, island, parent))

    # ------------------------------------------------------------ refine

    def elites(self, cands: list[CandidateRecord], island: int, iteration: int) -> list[CandidateRecord]:
        """The island's best distinct correct candidates, migrants included."""
        pool = [c for c in cands if _is_correct(c) and c.island == island]
        pool += self.migrants(cands, island, iteration)
        return _distinct(pool)[: self.elite_size]

    def migrants(self, cands: list[CandidateRecord], island: int, iteration: int) -> list[CandidateRecord]:
        """Candidates from other islands that have migrated to `island` by `iteration`."""
        if self.num_islands < 2 or self.migration_interval <= 0:
            return []
        out = []
        for event in range(1, iteration // self.migration_interval + 1):
            source = (event - 1) % self.num_islands
            if (source + 1) % self.num_islands != island:
                continue
            cutoff = event * self.migration_interval
            best = _distinct([c for c in cands if _is_correct(c) and c.island == source and c.iteration < cutoff])
            if best and all(c.id != best[0].id for c in out):
                out.append(best[0])
        return out

    # ------------------------------------------------------------ repair

    def _repair_target(self, cands: list[CandidateRecord], island: int) -> CandidateRecord | None:
        by_id = {c.id: c for c in cands}
        failures = [c for c in cands if c.status == "evaluated" and c.verdict_status in REPAIRABLE
                    and c.fitness is not None]
        if not failures:
            return None
        best_failure = min(failures, key=_rank)

        def root(c: CandidateRecord) -> int:
            # The failure a chain of repairs started from.
            while c.operation == "repair" and c.parent_id in by_id:
                c = by_id[c.parent_id]
            return c.id

        repairs = [c for c in cands if c.operation == "repair" and c.parent_id in by_id]
        attempts = Counter(root(by_id[c.parent_id]) for c in repairs)
        fixed = {root(by_id[c.parent_id]) for c in repairs if _is_correct(c)}

        def promising(c: CandidateRecord) -> bool:
            parent = by_id.get(c.parent_id) if c.parent_id is not None else None
            return (parent is not None and _is_correct(parent)) or c.id == best_failure.id

        targets = [c for c in failures if c.island == island and promising(c)
                   and attempts[root(c)] < self.max_repairs and root(c) not in fixed]
        # The best failure; among equals, the latest (its diagnosis is the freshest).
        return min(targets, key=lambda c: (-(c.fitness or 0.0), -c.id), default=None)

    # ------------------------------------------------------------ inspirations

    def _inspirations(self, cands: list[CandidateRecord], island: int, parent: CandidateRecord | None) -> list[int]:
        """Up to two strong, diverse correct candidates other than the parent: other islands
        first, and not two that are parent and child of each other or of the parent."""
        exclude_hash = parent.source_hash if parent is not None else None
        pool = [c for c in _distinct([c for c in cands if _is_correct(c)])
                if (parent is None or c.id != parent.id) and (exclude_hash is None or c.source_hash != exclude_hash)]
        pool.sort(key=lambda c: (c.island == island, _rank(c)))
        chosen: list[CandidateRecord] = []
        related = {parent.id, parent.parent_id} - {None} if parent is not None else set()
        for c in pool:
            if len(chosen) == 2:
                break
            if c.id in related or c.parent_id in related:
                continue
            chosen.append(c)
            related.add(c.id)
        for c in pool:  # not enough unrelated ones: fill with the next best
            if len(chosen) == 2:
                break
            if all(c.id != other.id for other in chosen):
                chosen.append(c)
        return [c.id for c in chosen]


# The registry: `policy` in the config (and RunConfig validation) reads it.
POLICIES: dict[str, type[SelectionPolicy]] = {cls.name: cls for cls in (IslandPolicy,)}


def make_policy(config) -> SelectionPolicy:
    """The selection policy a RunConfig names (`policy`, default "islands"), built from it."""
    return POLICIES[config.policy].from_config(config)
