"""The architecture contracts in pyproject.toml ([tool.importlinter]) hold, and they bite.

``lint-imports`` checks that the stages of ``partitioner`` import only the stages below them
and that the core never imports the plug-ins (``backends``, ``cost_models``). The second test
copies the same contracts onto a throwaway package tree with one deliberate violation of
each, so a contract that silently stopped matching anything would be noticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Root packages of the real tree -> their stand-ins in the throwaway tree.
STAND_INS = {
    "partitioner": "archcore",
    "backends": "archbackends",
    "cost_models": "archcostmodels",
    "models": "archmodels",
}


def _lint_imports() -> Path:
    """The venv's ``lint-imports``, next to this interpreter; skip when it is not installed."""
    exe = Path(sys.executable).parent / ("lint-imports.exe" if os.name == "nt" else "lint-imports")
    if not exe.is_file():
        pytest.importorskip("importlinter", reason="import-linter is not installed (dev extra)")
        pytest.skip(f"import-linter is installed but {exe} is missing")
    return exe


def _run(config: Path, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    return subprocess.run(
        [str(_lint_imports()), "--config", str(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _contracts() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"])


def test_the_architecture_contracts_are_kept() -> None:
    config = _contracts()
    assert len(config["contracts"]) == 2
    result = _run(ROOT / "pyproject.toml", ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for contract in config["contracts"]:
        assert " ".join(contract["name"].split()[:4]) in " ".join(output.split())
    assert "Contracts: 2 kept, 0 broken." in output


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _rename(value: Any) -> Any:
    """``value`` with every module path's root package swapped for its stand-in."""
    if isinstance(value, list):
        return [_rename(v) for v in value]
    if isinstance(value, str) and value.split(".")[0] in STAND_INS:
        head, _, tail = value.partition(".")
        return STAND_INS[head] + ("." + tail if tail else "")
    return value


def _write_config(path: Path) -> None:
    """The real contracts, root packages renamed, as a TOML file lint-imports reads."""
    config = _contracts()
    lines = ["[tool.importlinter]"]
    for key, value in config.items():
        if key != "contracts":
            lines.append(f"{key} = {_toml(_rename(value))}")
    for contract in config["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        for key, value in contract.items():
            keep = key in ("name", "type", "layers")  # layers are relative to the container
            lines.append(f"{key} = {_toml(value if keep else _rename(value))}")
    path.write_text("\n".join(lines) + "\n")


def _layer_modules() -> list[str]:
    layered = next(c for c in _contracts()["contracts"] if c["type"] == "layers")
    names = []
    for layer in layered["layers"]:
        names += [n.strip() for n in layer.replace("|", ":").split(":") if n.strip()]
    return names


def _write_tree(root: Path, imports: dict[str, str]) -> None:
    """Stand-in packages: one core module per layer, one plug-in module per plug-in package;
    ``imports`` maps a module (relative to the core) to the module it imports."""
    for package in STAND_INS.values():
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
    (root / STAND_INS["backends"] / "some_runner.py").write_text("")
    (root / STAND_INS["cost_models"] / "some_model.py").write_text("")
    for name in _layer_modules():
        body = f"import {imports[name]}\n" if name in imports else ""
        (root / STAND_INS["partitioner"] / f"{name}.py").write_text(body)


def test_a_deliberate_violation_breaks_each_contract(tmp_path: Path) -> None:
    core, plugins = STAND_INS["partitioner"], STAND_INS["backends"]
    config = tmp_path / "contracts.toml"
    _write_config(config)
    clean = tmp_path / "clean"
    clean.mkdir()
    _write_tree(clean, {"runtime": f"{core}.plan"})  # downward: allowed
    result = _run(config, clean, clean)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout

    broken = tmp_path / "broken"
    broken.mkdir()
    # graph sits below solver; the core's runtime imports a runner module directly.
    _write_tree(broken, {"graph": f"{core}.solver", "runtime": f"{plugins}.some_runner"})
    result = _run(config, broken, broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Contracts: 0 kept, 2 broken." in output
    assert f"{core}.graph -> {core}.solver" in output
    assert f"{core}.runtime -> {plugins}.some_runner" in output


def test_every_stage_of_partitioner_is_in_a_layer() -> None:
    """A module or package left out of the layers escapes the contract unnoticed."""
    package = ROOT / "partitioner"
    present = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(present - set(_layer_modules())) == []
