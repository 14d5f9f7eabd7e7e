"""``check_plan``: every invariant it refuses, and the order in which it looks at them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_plan_fixtures import BRANCHY_SPLIT, branchy_model, cluster, device, save_and_analyse

from partitioner.costing.types import CostTable, Supported
from partitioner.errors import PlanError
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.check import check_plan
from partitioner.plan.codec import plan_from_dict, plan_to_dict


@pytest.fixture()
def document(tmp_path: Path) -> dict[str, Any]:
    """The branchy model's plan split over devices ``a`` and ``b``, as a plan.json dict."""
    analysed = save_and_analyse(branchy_model(), tmp_path, "branchy")
    costs = CostTable()
    for node in analysed.facts.nodes:
        costs.set(node.name, "a", Supported(1e-4, 0, "test"))
        costs.set(node.name, "b", Supported(2e-4, 0, "test"))
    plan = plan_from_assignment(analysed, cluster(device("a"), device("b")), BRANCHY_SPLIT, costs)
    check_plan(plan, "plan")
    return plan_to_dict(plan)


def _first_cut_input(d: dict[str, Any]) -> dict[str, Any]:
    """The first partition input that comes from another partition."""
    return next(i for p in d["partitions"] for i in p["inputs"]
                if i.get("from_partition") is not None)


def _unplace(d: dict[str, Any]) -> None:
    name = d["partitions"][0]["nodes"][0]
    del d["placement"][name]


def _misplace(d: dict[str, Any]) -> None:
    part = d["partitions"][0]
    d["placement"][part["nodes"][0]]["device"] = "b" if part["device"] == "a" else "a"


def _lose_outputs(d: dict[str, Any]) -> None:
    for p in d["partitions"]:
        for o in p["outputs"]:
            o["graph_output"] = False


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("device", lambda d: d["partitions"][1].update(device="gpu9"), r"gpu9.*not in cluster"),
    ("indices", lambda d: d["partitions"][0].update(index=7), r"partition indices must be 0\.\."),
    ("twice", lambda d: d["partitions"][1]["nodes"].append(d["partitions"][0]["nodes"][0]),
     "placed twice"),
    ("unplaced", _unplace, "missing from placement"),
    ("misplaced", _misplace, "but placement puts .* elsewhere"),
    ("pin", lambda d: d.update(pins={"stem": "b" if d["placement"]["stem"]["device"] == "a"
                                     else "a"}), "stem pinned to"),
    ("orphan input", lambda d: _first_cut_input(d).update(from_partition=None, name="nowhere"),
     "'nowhere' comes from no partition and is not a model input"),
    ("lost output", _lose_outputs, r"model output\(s\) .* are produced by no partition"),
]


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_check_plan_refuses(document: dict[str, Any], change: Callable[[dict[str, Any]], None],
                            message: str) -> None:
    change(document)
    with pytest.raises(PlanError, match=message):
        check_plan(plan_from_dict(document), "plan")


def test_the_checks_run_in_order(document: dict[str, Any]) -> None:
    """Breaking the invariants from the last checked to the first, each new break is the
    one reported: the earliest broken invariant is always named."""
    for _, change, message in reversed(CASES):
        change(document)
        with pytest.raises(PlanError, match=message):
            check_plan(plan_from_dict(document), "plan")
