"""timed_partitions: calls formed in time cover every node once, in a topological order."""

from __future__ import annotations

import random

from partitioner.solver.index import index_of
from partitioner.solver.partitioning import bottom_levels
from partitioner.solver.timed_cut import timed_partitions
from partitioner.testing.random_problem import demo_cluster, random_problem


def test_timed_calls_cover_every_node_once_in_a_topological_order_on_random_problems() -> None:
    rng = random.Random(0)
    for seed in range(40):
        kind = ("cpu+gpu", "cpu+npu", "cpu+cpu")[seed % 3]
        p = random_problem(rng.randint(2, 60), demo_cluster(kind), seed=seed)
        idx = index_of(p)
        dev = [rng.choice(allowed) for allowed in idx.allowed]
        assignment = {name: idx.devices[dev[i]] for i, name in enumerate(idx.names)}
        levels = bottom_levels(
            idx.names, [(idx.names[s], idx.names[t], b) for t, ps in enumerate(idx.preds)
                        for s, b, _ in ps], assignment,
            node_time=lambda name: 1.0, hop_time=lambda a, b, nbytes: 1.0)
        for exits_first in (False, True):
            parts = timed_partitions(idx, dev, levels, p.cluster.concurrent, exits_first)
            placed = [name for q in parts for name in q.nodes]
            assert sorted(placed) == sorted(idx.names)
            assert all(assignment[name] == q.device for q in parts for name in q.nodes)
            call = {name: q.index for q in parts for name in q.nodes}
            position = {name: j for q in parts for j, name in enumerate(q.nodes)}
            for src, dst in idx.edge_names:
                # Calls read only from earlier calls; inside a call, producers come first.
                assert call[src] < call[dst] or (call[src] == call[dst]
                                                  and position[src] < position[dst])
