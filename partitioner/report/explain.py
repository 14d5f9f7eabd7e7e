"""``explain``: a few lines on why one node of a plan runs where it does."""

from __future__ import annotations

import difflib

from partitioner.errors import ReportError
from partitioner.plan.types import Plan
from partitioner.report.fmt import fmt_bytes, fmt_delta_time, fmt_time
from partitioner.report.inputs import GraphDetail
from partitioner.report.moves import NodeContext, analyse_node
from partitioner.report.resources import device_usage


def explain(plan: Plan, node_name: str, detail: GraphDetail | None = None) -> str:
    """Why ``node_name`` is placed where it is.

    Args:
        plan: The plan.
        node_name: A node of the plan.
        detail: Node edges (from ``read_graph_detail``); without it, transfers are left out
            of the answer.

    Returns:
        A few lines: placement, reason, cost on every device with the cost of moving there,
        the tensors it exchanges, the binding constraints.

    Raises:
        ReportError: ``node_name`` is not in the plan (close matches are listed).
    """
    if node_name not in plan.placement:
        close = difflib.get_close_matches(node_name, list(plan.placement), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ReportError(
            f"node {node_name!r} is not in plan of {plan.model.name} "
            f"({len(plan.placement)} nodes){hint}"
        )
    detail = detail or GraphDetail()
    usage = device_usage(plan, None)
    ctx = NodeContext.build(plan, detail, {d.id: d.capacity_bytes - d.used_bytes for d in usage})
    analysis = analyse_node(ctx, node_name)
    node = plan.placement[node_name]
    chosen = node.costs.get(node.device)
    lines = [
        f"{node_name} ({node.op_type}) runs on {node.device} in partition p{node.partition}, "
        f"predicted {fmt_time(node.start_s)} .. {fmt_time(node.end_s)}",
        f"why: {analysis.why}",
        "cost on each device (moving = own time + transfers + runner calls, a serial estimate):",
    ]
    width = max(len(d) for d in plan.cluster.device_ids)
    moves = {m.device: m for m in analysis.moves}
    for device in plan.cluster.device_ids:
        cost = node.costs.get(device)
        label = device.ljust(width)
        if device == node.device:
            source = f" [{chosen.source}]" if chosen and chosen.source else ""
            shown = fmt_time(chosen.latency_s) if chosen else "?"
            lines.append(f"  {label}  {shown:>9}  <- chosen{source}")
            continue
        move = moves[device]
        if move.unsupported is not None:
            lines.append(f"  {label}  {'-':>9}  cannot run it: {move.unsupported}")
            continue
        shown = fmt_time(cost.latency_s) if cost else "?"
        text = (
            f"  {label}  {shown:>9}  moving: own {fmt_delta_time(move.own_delta_s)}, transfers "
            f"{fmt_delta_time(move.transfer_delta_s)}, calls {fmt_delta_time(move.call_delta_s)}"
            f" = {fmt_delta_time(move.total_s)}"
        )
        if move.memory_blocked:
            text += f" (does not fit: {move.memory_blocked})"
        lines.append(text)
    ins = [
        f"{e.tensor} from {e.src} on {plan.placement[e.src].device} ({fmt_bytes(e.nbytes)})"
        for e in ctx.preds.get(node_name, ())
        if e.src in plan.placement
    ]
    outs = [
        f"{e.tensor} to {e.dst} on {plan.placement[e.dst].device} ({fmt_bytes(e.nbytes)})"
        for e in ctx.succs.get(node_name, ())
        if e.dst in plan.placement
    ]
    if ins:
        lines.append("inputs:  " + "; ".join(ins[:6]) + (" ..." if len(ins) > 6 else ""))
    if outs:
        lines.append("outputs: " + "; ".join(outs[:6]) + (" ..." if len(outs) > 6 else ""))
    if node.weight_bytes:
        lines.append(f"weights: {fmt_bytes(node.weight_bytes)} resident on {node.device}")
    if analysis.constraints:
        lines.append("constraints: " + "; ".join(analysis.constraints))
    return "\n".join(lines) + "\n"
