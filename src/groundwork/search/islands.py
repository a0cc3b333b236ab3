"""Island search: K sub-populations, each evolving with its own exploit pool and its own
explore sample; every `migrate_every` epochs the best `migrants` of each island join the
next one (a ring: island i to i+1, the last to the first).

Everything is read from the run store, so a killed and resumed run reproduces it: an
idea's home island is stored in its payload (`island`), and each migration round is stored
when it happens (the loop records what `due_migrations` returns). An island's members are
its home ideas plus those that migrated in. Only ideas of the exploit pool migrate: beyond
the noise and, with confirmations on, confirmed.

New ideas go to the island with the fewest so far (ties: the lower index), one at a time,
so islands stay the same size in epoch search and in steady-state batches alike."""

from __future__ import annotations

import copy
import dataclasses

from groundwork.protocols import IdeationRequest, SearchHistory
from groundwork.search.evolution import EvolutionStrategy

ISLAND_SEED_STRIDE = 1_000_003  # island i's requests use seed + i * stride: islands draw differently


class IslandStrategy:
    def __init__(self, inner: EvolutionStrategy, islands: int, migrate_every: int = 2, migrants: int = 1):
        if islands < 2 or migrate_every < 1 or migrants < 1:
            raise ValueError(
                f"island search needs islands >= 2, migrate_every >= 1 and migrants >= 1, got {islands}, "
                f"{migrate_every} and {migrants} (one island is plain {inner.name} search: leave --islands at 1)"
            )
        self.inner = inner
        self.islands = islands
        self.migrate_every = migrate_every
        self.migrants = migrants
        self.name = inner.name
        self.epochs = inner.epochs
        self.ideas_per_epoch = inner.ideas_per_epoch
        self._per_island = [_reseeded(inner, inner.seed + i * ISLAND_SEED_STRIDE) for i in range(islands)]

    # ---- membership, from the store -------------------------------------------------

    def home(self, history: SearchHistory) -> dict[str, int]:
        """Each idea's home island (ideas proposed without one, e.g. by a run that had no
        islands, belong to island 0)."""
        return {i.id: int(i.payload.get("island", 0)) % self.islands for i in history.proposed}

    def members(self, history: SearchHistory) -> list[set[str]]:
        sets: list[set[str]] = [set() for _ in range(self.islands)]
        for idea_id, island in self.home(history).items():
            sets[island].add(idea_id)
        for round_ in history.migrations:
            for idea_id, _src, dst in round_["moves"]:
                sets[int(dst)].add(idea_id)
        return sets

    def island_history(self, history: SearchHistory, members: set[str]) -> SearchHistory:
        return dataclasses.replace(
            history,
            scored=[s for s in history.scored if s.idea.id in members],
            proposed=[i for i in history.proposed if i.id in members],
        )

    # ---- migration --------------------------------------------------------------------

    def due_migrations(self, epoch: int, history: SearchHistory) -> list[dict]:
        done = max((int(r["round"]) for r in history.migrations), default=0)
        due = self.inner.epochs_done(epoch, history) // self.migrate_every
        rounds, stored = [], list(history.migrations)
        for number in range(done + 1, due + 1):
            view = dataclasses.replace(history, migrations=stored)
            moves = self._moves(view)
            round_ = {"round": number, "epoch": epoch, "moves": moves}
            rounds.append(round_)
            stored.append(round_)
        return rounds

    def _moves(self, history: SearchHistory) -> list[list]:
        """The best `migrants` of each island's exploit pool not yet on the next island, all
        chosen before any moves (a round is simultaneous)."""
        members = self.members(history)
        moves = []
        for island in range(self.islands):
            target = (island + 1) % self.islands
            pool = self.island_history(history, members[island]).beating_baseline()
            chosen = [s.idea.id for s in pool if s.idea.id not in members[target]][: self.migrants]
            moves += [[idea_id, island, target] for idea_id in chosen]
        return moves

    # ---- planning ------------------------------------------------------------------------

    def allocate(self, history: SearchHistory, count: int) -> list[int]:
        """How many of `count` new ideas each island gets: one at a time to the island with
        the fewest home ideas so far."""
        sizes = [0] * self.islands
        for island in self.home(history).values():
            sizes[island] += 1
        share = [0] * self.islands
        for _ in range(count):
            island = min(range(self.islands), key=lambda i: (sizes[i] + share[i], i))
            share[island] += 1
        return share

    def plan_epoch(self, epoch: int, history: SearchHistory, count: int | None = None) -> list[IdeationRequest]:
        count = count or self.ideas_per_epoch
        members = self.members(history)
        share_epoch = self.inner.share_epoch(epoch, history)  # the run's progress, not an island's
        requests = []
        for island, n in enumerate(self.allocate(history, count)):
            if n == 0:
                continue
            local = self.island_history(history, members[island])
            for request in self._per_island[island]._requests(epoch, share_epoch, local, n):
                requests.append(dataclasses.replace(request, island=island))
        return requests


def _reseeded(inner: EvolutionStrategy, seed: int) -> EvolutionStrategy:
    twin = copy.copy(inner)
    twin.seed = seed
    return twin
