"""plan.json schema checks (fastjsonschema, compiled once) and the recorded tool versions."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_plan_fixtures import BRANCHY_SPLIT, branchy_model, cluster, device, save_and_analyse

from partitioner import __version__
from partitioner.costing.types import CostTable, Supported
from partitioner.errors import PlanError
from partitioner.plan import check as plan_check
from partitioner.plan.assign import plan_from_assignment
from partitioner.plan.check import plan_schema, plan_validator, validate_plan_document
from partitioner.plan.codec import plan_from_dict, plan_json, plan_to_dict
from partitioner.plan.io import load_plan, write_plan
from partitioner.versions import format_versions, installed_version, toolchain_versions


@pytest.fixture(scope="module")
def branchy(tmp_path_factory: pytest.TempPathFactory):
    analysed = save_and_analyse(branchy_model(), tmp_path_factory.mktemp("m"), "branchy")
    costs = CostTable()
    for node in analysed.facts.nodes:
        costs.set(node.name, "a", Supported(1e-4, 0, "test"))
        costs.set(node.name, "b", Supported(2e-4, 0, "test"))
    plan = plan_from_assignment(analysed, cluster(device("a"), device("b")), BRANCHY_SPLIT, costs)
    return analysed, plan


def _refused(data: dict, match: str) -> str:
    with pytest.raises(PlanError, match=match) as info:
        validate_plan_document(data, "dir/plan.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("dir/plan.json: invalid plan at ")
    return message


def test_validator_is_compiled_once_and_leaves_the_schema_alone(branchy) -> None:
    _, plan = branchy
    before = copy.deepcopy(plan_schema())
    assert plan_validator() is plan_validator()
    validate_plan_document(plan_to_dict(plan), "plan")
    # fastjsonschema rewrites the $refs of what it compiles; the cached schema stays as read.
    assert plan_schema() == before and '"$ref": "#/$defs/' in json.dumps(plan_schema())


def test_violations_name_the_json_path(branchy) -> None:
    _, plan = branchy
    data = plan_to_dict(plan)
    # Node names hold dots, slashes and brackets: the path follows the document's keys.
    node = "/layer.0/attn[1]/MatMul"
    data["placement"][node] = copy.deepcopy(data["placement"]["stem"])
    data["placement"][node]["costs"]["b"]["latency_s"] = "fast"
    msg = _refused(data, "must be number")
    assert "placement/'/layer.0/attn[1]/MatMul'/costs/b/latency_s: must be number" in msg

    data = plan_to_dict(plan)
    data["placement"]["stem"]["costs"]["a"] = {"reason": "no"}
    _refused(data, r"placement/stem/costs/a: 'unsupported' is a required property")

    data = plan_to_dict(plan)
    data["partitions"][1]["colour"] = "red"
    _refused(data, r"at partitions/1: unknown key\(s\) \['colour'\]")

    data = plan_to_dict(plan)
    del data["solver"]["gap"], data["solver"]["bound"]
    _refused(data, "at solver: 'bound', 'gap' are required properties")

    data = plan_to_dict(plan)
    data["objective"]["name"] = "speed"
    _refused(data, "at objective/name: must be one of")

    data = plan_to_dict(plan)
    del data["model"]
    _refused(data, r"at \(top level\): 'model' is a required property")


def test_unsupported_cost_entries_still_validate(branchy) -> None:
    _, plan = branchy
    data = plan_to_dict(plan)
    data["placement"]["stem"]["costs"]["b"] = {"unsupported": "not in b's table"}
    validate_plan_document(data, "plan")
    data["placement"]["stem"]["costs"]["b"] = {"unsupported": "x", "latency_s": 1.0}
    _refused(data, r"placement/stem/costs/b: unknown key\(s\) \['unsupported'\]")


def test_plans_record_the_versions_that_compiled_them(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    versions = toolchain_versions()
    assert list(versions) == ["hetpart", "onnxruntime", "openvino", "ortools"]
    assert versions["hetpart"] == __version__ and versions["onnxruntime"]
    assert plan.compiled_with == versions
    write_plan(plan, analysed, tmp_path / "plan")
    data = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert data["compiled_with"] == versions
    assert load_plan(tmp_path / "plan").compiled_with == versions


def test_older_plans_without_versions_load_and_rewrite_unchanged(branchy, tmp_path: Path) -> None:
    analysed, plan = branchy
    write_plan(plan, analysed, tmp_path / "plan")
    path = tmp_path / "plan" / "plan.json"
    data = json.loads(path.read_text())
    del data["compiled_with"]
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    loaded = load_plan(tmp_path / "plan")
    assert loaded.compiled_with == {}
    assert plan_json(loaded) == text  # no empty compiled_with appears


def test_versions_may_be_null_but_must_be_strings(branchy) -> None:
    _, plan = branchy
    data = plan_to_dict(plan)
    data["compiled_with"]["openvino"] = None
    validate_plan_document(data, "plan")
    assert plan_from_dict(data).compiled_with["openvino"] is None
    data["compiled_with"]["ortools"] = 9
    _refused(data, "at compiled_with/ortools: must be string or null")


def test_missing_libraries_have_no_version() -> None:
    assert installed_version("surely-not-a-hetpart-dependency") is None
    assert format_versions({"hetpart": "1.2.3", "openvino": None}) == (
        "hetpart 1.2.3, openvino not installed"
    )


def test_nothing_imports_jsonschema() -> None:
    """fastjsonschema replaced jsonschema: no module of the project may import it again."""
    root = Path(__file__).resolve().parents[1]
    offenders = [
        str(path.relative_to(root))
        for folder in ("partitioner", "backends", "cost_models", "models", "tests")
        for path in (root / folder).rglob("*.py")
        if any(
            line.split("#")[0].split()[:2] in (["import", "jsonschema"], ["from", "jsonschema"])
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
    code = (
        "import sys, partitioner.plan.check as p; p.plan_validator(); "
        "print('jsonschema' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_schema_keeps_to_keywords_fastjsonschema_implements() -> None:
    """The schema says draft 2020-12; fastjsonschema implements draft 7. Keywords whose
    meaning differs or that draft 7 lacks would be silently ignored, so none may appear."""
    unsupported = {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "$dynamicRef",
        "$anchor",
        "minContains",
        "maxContains",
    }
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.update(k for k in node if k in unsupported)
            if isinstance(node.get("items"), list):
                found.add("items (array form)")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan_check.plan_schema())
    assert found == set()


@pytest.mark.parametrize("enabled", [True, False])
def test_load_plan_restores_the_garbage_collector(branchy, tmp_path: Path, enabled: bool) -> None:
    import gc

    analysed, plan = branchy
    write_plan(plan, analysed, tmp_path / "plan")
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        load_plan(tmp_path / "plan")
        assert gc.isenabled() is enabled
        (tmp_path / "plan" / "plan.json").write_text('{"format_version": "hetpart-plan/1"}')
        with pytest.raises(PlanError, match="'model', "):
            load_plan(tmp_path / "plan")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
