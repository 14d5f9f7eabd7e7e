"""Cost tables: pick the default cost model for a cluster and fill a CostTable with it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from partitioner.costs import Cost, CostTable
from partitioner.devices import Cluster
from partitioner.protocols import CostModel
from partitioner.registry import cost_models

if TYPE_CHECKING:
    from partitioner.analysis import AnalysedModel

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def default_cost_model(cluster: Cluster, **options: Any) -> CostModel:
    """The cost model a cluster gets when the user names none.

    Clusters with devices on this machine (``local``, ``local-cores``, ``local = true``) get
    the ``profiled`` model: measured per signature, a fitted regression for signatures not
    measured, and the roofline for any non-local device; the model is also timed whole on
    each local runner, and its node costs scaled to that time (fusion inside a runner makes
    per-node sums miss by 2-4x). Spec-sheet clusters get ``roofline``.

    Args:
        cluster: The cluster to cost.
        **options: Passed to the profiled model (``cache``, ``repeats``, ``measure``...).
    """
    if any(d.local for d in cluster.devices):
        options.setdefault("calibrate", True)
        return cost_models.create("profiled", **options)  # type: ignore[no-any-return]
    return cost_models.create("roofline")  # type: ignore[no-any-return]


def build_cost_table(
    model: AnalysedModel,
    cluster: Cluster,
    cost_model: CostModel | None = None,
    progress: Progress | None = None,
) -> CostTable:
    """Cost every (node, device) pair of ``model`` on ``cluster``.

    Cost models with a ``prepare(model, cluster, progress)`` method (the profiled one) are
    given the whole model first, so they can measure every distinct signature with one
    progress bar. Nodes with equal signatures are costed once per device.

    Args:
        model: The analysed model.
        cluster: Devices to cost.
        cost_model: Defaults to :func:`default_cost_model`.
        progress: Called with ``(done, total)`` while signatures are measured.

    Returns:
        A table with a Supported or Unsupported entry for every pair.
    """
    cm = cost_model or default_cost_model(cluster)
    prepare = getattr(cm, "prepare", None)
    if callable(prepare):
        prepare(model, cluster, progress)
    table = CostTable()
    memo: dict[tuple[str, str], Cost] = {}
    for node in model.facts.nodes:
        for device in cluster.devices:
            key = (node.signature, device.id)
            cost = memo.get(key)
            if cost is None:
                cost = cm.estimate(model, node, device)
                memo[key] = cost
            table.set(node.name, device.id, cost)
    log.info("costed %d nodes x %d devices with %s (%d distinct pairs)",
             len(model.facts.nodes), len(cluster.devices), cm.name, len(memo))
    return table
