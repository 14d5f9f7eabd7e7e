"""Name -> plug-in registries that import plug-ins lazily by file name.

Runners live in ``backends/<name>_runner.py`` and expose ``create() -> Runner``; cost models
live in ``cost_models/<name>.py`` and expose ``create(**options) -> CostModel``. Importing
lazily keeps OpenVINO and GPU stacks optional: nothing is imported until a device names it.

Every plug-in is checked against its protocol (``partitioner.protocols``) when the registry
first creates it: a member the protocol declares that the plug-in lacks (or a method that is
not callable) is a one-line :class:`RunnerProtocolError` / :class:`CostModelProtocolError`
naming the plug-in, its module and the members, instead of an AttributeError deep inside a
run. The executor checks each prepared partition against ``PreparedPartition`` the same way
(:func:`check_prepared`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from partitioner.errors import (
    ClusterError,
    CostModelError,
    PartitionerError,
    RunnerNotAvailableError,
)
from partitioner.protocols import CostModel, PreparedPartition, Runner

#: Extra that installs each optional runner's library.
RUNNER_EXTRAS = {"openvino": "pip install 'hetpart[openvino]'"}


class RunnerProtocolError(ClusterError):
    """A runner plug-in (or what its ``prepare`` returned) lacks a protocol member."""


class CostModelProtocolError(CostModelError):
    """A cost-model plug-in lacks a member of the CostModel protocol."""


def protocol_members(protocol: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (attributes, methods) ``protocol`` declares, its protocol bases' included."""
    attributes: list[str] = []
    methods: list[str] = []
    for klass in reversed(protocol.__mro__):
        if not getattr(klass, "_is_protocol", False) or klass.__module__ == "typing":
            continue
        for name in inspect.get_annotations(klass):
            if name not in attributes:
                attributes.append(name)
        for name, value in vars(klass).items():
            if not name.startswith("_") and callable(value) and name not in methods:
                methods.append(name)
    return tuple(attributes), tuple(methods)


def protocol_problems(obj: object, protocol: type) -> list[str]:
    """What ``obj`` lacks of ``protocol``: ``["missing a, b", "not callable: c"]``, or []."""
    attributes, methods = protocol_members(protocol)
    missing = [name for name in (*attributes, *methods) if not hasattr(obj, name)]
    not_callable = [
        name for name in methods if hasattr(obj, name) and not callable(getattr(obj, name))
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if not_callable:
        problems.append("not callable: " + ", ".join(not_callable))
    return problems


def check_protocol(
    obj: object, protocol: type, what: str, module: str, error: type[PartitionerError]
) -> None:
    """Raise ``error`` (one line naming ``what``, ``module`` and the members) unless ``obj``
    has every member ``protocol`` declares, methods callable."""
    problems = protocol_problems(obj, protocol)
    if problems:
        raise error(
            f"{what} (module {module}) does not implement the {protocol.__name__} protocol: "
            + "; ".join(problems)
        )


class Registry:
    """Maps names to factories; refuses duplicates; resolves unknown names by module path.

    Every object a factory creates is checked against ``protocol`` once per (name, type)
    (see :func:`check_protocol`); a plug-in that fails raises ``error``.
    """

    def __init__(
        self,
        kind: str,
        module_pattern: str,
        protocol: type,
        error: type[PartitionerError],
    ) -> None:
        self._kind = kind
        self._pattern = module_pattern
        self._protocol = protocol
        self._error = error
        self._factories: dict[str, Callable[..., Any]] = {}
        self._modules: dict[str, str] = {}
        self._checked: set[tuple[str, type]] = set()

    def register(self, name: str, factory: Callable[..., Any], module: str | None = None) -> None:
        if name in self._factories:
            raise ValueError(f"{self._kind} {name!r} is registered twice")
        self._factories[name] = factory
        self._modules[name] = module or str(getattr(factory, "__module__", "?"))

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
            create = getattr(module, "create", None)
            if not callable(create):
                raise self._error(
                    f"{self._kind} {name!r} (module {module_name}) has no create() entry point"
                )
            self.register(name, create, module_name)
        return self._factories[name]

    def create(self, name: str, **options: Any) -> Any:
        """A new plug-in called ``name``, checked against the registry's protocol."""
        plugin = self.factory(name)(**options)
        key = (name, type(plugin))
        if key not in self._checked:
            check_protocol(
                plugin, self._protocol, f"{self._kind} {name!r}", self._modules[name], self._error
            )
            self._checked.add(key)
        return plugin


runners = Registry("runner", "backends.{name}_runner", Runner, RunnerProtocolError)
cost_models = Registry("cost model", "cost_models.{name}", CostModel, CostModelProtocolError)


def get_runner(name: str) -> Runner:
    """Return a ready ``Runner`` called ``name``; raises if its library is missing.

    Raises:
        ClusterError: no runner of that name.
        RunnerNotAvailableError: its library is not installed here.
        RunnerProtocolError: the plug-in lacks a member of the Runner protocol.
    """
    runner: Runner = runners.create(name)
    if not runner.available():
        hint = RUNNER_EXTRAS.get(name, "")
        raise RunnerNotAvailableError(
            f"runner {name!r} is not available on this machine" + (f": {hint}" if hint else "")
        )
    return runner


def get_cost_model(name: str, **options: Any) -> CostModel:
    """A new ``CostModel`` called ``name`` built with ``options``.

    Raises:
        ClusterError: no cost model of that name.
        CostModelProtocolError: the plug-in lacks a member of the CostModel protocol.
    """
    model: CostModel = cost_models.create(name, **options)
    return model


_checked_partitions: set[type] = set()


def check_prepared(runner: str, prepared: object) -> None:
    """Raise RunnerProtocolError unless ``prepared`` (what runner ``runner``'s ``prepare``
    returned) has every member of the PreparedPartition protocol (checked once per type)."""
    kind = type(prepared)
    if kind in _checked_partitions:
        return
    check_protocol(
        prepared,
        PreparedPartition,
        f"runner {runner!r}'s prepared partition {kind.__name__}",
        kind.__module__,
        RunnerProtocolError,
    )
    _checked_partitions.add(kind)
