"""Cost tables: pick the default cost model for a cluster and fill a CostTable with it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from partitioner.cluster.types import Cluster
from partitioner.costing.types import Cost, CostTable
from partitioner.protocols import CostModel
from partitioner.registry import cost_models

if TYPE_CHECKING:
    from partitioner.graph.analysis import AnalysedModel

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
    report_fallbacks(model, getattr(cm, "fallbacks", None))
    return table


def fallback_summary(model: AnalysedModel,
                     fallbacks: Mapping[tuple[str, str], tuple[str, str]] | None
                     ) -> dict[str, dict[str, Any]]:
    """Per device: how many nodes were costed by a fallback model instead of a measurement,
    by which model, and why (reason -> node count).

    Args:
        model: The analysed model.
        fallbacks: ``(signature, device id) -> (cost source, reason)``, as a profiled cost
            model's ``fallbacks``.
    """
    out: dict[str, dict[str, Any]] = {}
    if not fallbacks:
        return out
    by_signature: dict[str, list[tuple[str, str, str]]] = {}
    for (signature, device), (source, reason) in fallbacks.items():
        by_signature.setdefault(signature, []).append((device, source, reason))
    for node in model.facts.nodes:
        for device, source, reason in by_signature.get(node.signature, ()):
            entry = out.setdefault(device, {"nodes": 0, "sources": {}, "reasons": {}})
            entry["nodes"] += 1
            entry["sources"][source] = entry["sources"].get(source, 0) + 1
            entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
    return out


def report_fallbacks(model: AnalysedModel,
                     fallbacks: Mapping[tuple[str, str], tuple[str, str]] | None) -> None:
    """Warn, per device, how many nodes fell back from measurement to a model, and why."""
    for device, entry in sorted(fallback_summary(model, fallbacks).items()):
        sources = ", ".join(f"{n} {s}" for s, n in sorted(entry["sources"].items()))
        reasons = sorted(entry["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))
        why = "; ".join(f"{n}x {r}" for r, n in reasons[:3])
        more = f"; and {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else ""
        chosen = all(r.startswith("not profiled") for r in entry["reasons"])
        log.log(logging.INFO if chosen else logging.WARNING,
                "%s: %d node(s) not measured, costed by a model instead (%s): %s%s",
                device, entry["nodes"], sources, why, more)
