"""Name -> plug-in registries that import plug-ins lazily by file name.

Runners live in ``backends/<name>_runner.py`` and expose ``create() -> Runner``; cost models
live in ``cost_models/<name>.py`` and expose ``create(**options) -> CostModel``. Importing
lazily keeps OpenVINO and GPU stacks optional: nothing is imported until a device names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from partitioner.errors import ClusterError, RunnerNotAvailableError

#: Extra that installs each optional runner's library.
RUNNER_EXTRAS = {"openvino": "pip install 'hetpart[openvino]'"}


class Registry:
    """Maps names to factories; refuses duplicates; resolves unknown names by module path."""

    def __init__(self, kind: str, module_pattern: str) -> None:
        self._kind = kind
        self._pattern = module_pattern
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, factory: Callable[..., Any]) -> None:
        if name in self._factories:
            raise ValueError(f"{self._kind} {name!r} is registered twice")
        self._factories[name] = factory

    def factory(self, name: str) -> Callable[..., Any]:
        if name not in self._factories:
            module_name = self._pattern.format(name=name)
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    raise ClusterError(
                        f"unknown {self._kind} {name!r} (no module {module_name})"
                    ) from None
                hint = RUNNER_EXTRAS.get(name, f"install the library {exc.name!r}")
                raise RunnerNotAvailableError(
                    f"{self._kind} {name!r} needs {exc.name!r}, which is not installed: {hint}"
                ) from None
            self.register(name, module.create)
        return self._factories[name]

    def create(self, name: str, **options: Any) -> Any:
        return self.factory(name)(**options)


runners = Registry("runner", "backends.{name}_runner")
cost_models = Registry("cost model", "cost_models.{name}")


def get_runner(name: str) -> Any:
    """Return a ready ``Runner`` called ``name``; raises if its library is missing."""
    runner = runners.create(name)
    if not runner.available():
        hint = RUNNER_EXTRAS.get(name, "")
        raise RunnerNotAvailableError(
            f"runner {name!r} is not available on this machine" + (f": {hint}" if hint else "")
        )
    return runner
