"""The time limit of a solve, split into stages that end at fixed points of the clock."""

from __future__ import annotations

from dataclasses import dataclass

#: Share of the time limit kept for the relaxation (``relaxation`` for latency,
#: ``load_relaxation`` for throughput and cost), which proves the bound.
RELAXATION_SHARE = 0.35

#: Share of the time limit for local refinement (``refine``) of the best candidates.
REFINE_SHARE = 0.15

#: Share of the time limit left for evaluating candidates and the closed-form bounds.
FINISH_SHARE = 0.05


@dataclass(frozen=True)
class Stages:
    """The time limit split into stages: CP-SAT search, the relaxation (when ``relax``: up
    to ``relaxation.RELAXATION_NODE_LIMIT`` nodes), refinement and the finish. Each stage
    has a fixed budget (``*_s``, spent by count or deterministic time, so that the same
    input gives the same plan) and a wall-clock end (``*_end``, ``time.perf_counter()``)
    that stops it on a slow or loaded machine, so the whole solve ends near the limit. The
    clock starts with the solve (``started``): the baselines and coarsening, which run first
    and are not cut, use up the search stage's time first."""

    started: float
    limit_s: float
    relax: bool

    @property
    def relaxation_s(self) -> float:
        return RELAXATION_SHARE * self.limit_s if self.relax else 0.0

    @property
    def refine_s(self) -> float:
        return REFINE_SHARE * self.limit_s

    @property
    def search_s(self) -> float:
        return self.limit_s * (1 - FINISH_SHARE) - self.refine_s - self.relaxation_s

    @property
    def search_end(self) -> float:
        return self.started + self.search_s

    @property
    def relaxation_end(self) -> float:
        return self.search_end + self.relaxation_s

    @property
    def end(self) -> float:
        """Where refinement stops: the finish's share is left after it."""
        return self.relaxation_end + self.refine_s
