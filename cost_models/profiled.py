"""Profiled cost model: every distinct node signature measured alone on each local runner.

Each signature is cut out as a one-node ONNX model, run with synthetic feeds (warm-up, then
repeats within a time budget; median and p10-p90 spread), and the runner's per-call overhead,
measured in the same session with the same loop, is subtracted. Results live in the SQLite
profile cache keyed by signature and runner fingerprint (which includes the harness version,
so rows of an older harness are not reused). A node the runtime refuses to load (twice, with
the same message, from a well-formed single-node model with concrete shapes, and again in its
minimal subgraph: the small integer inputs the graph computes, such as axes and sizes, given as
constants) is Unsupported with the runtime's message, and that verdict is cached. A failure of
our harness (no model or feed could be built, an exception in our code, a configuration
error, a run on synthetic data that fails, a refusal that does not repeat) is never cached: it
is logged, the node is costed by the fitted model, then the roofline, for this run only, and
``fallbacks`` says which and why. Non-local devices always get the roofline.

Nodes timed alone miss fusion and in-graph dispatch (see ``cost_models.calibration``). With
``calibrate=True`` :meth:`ProfiledCostModel.prepare` also times the whole model per runner and
stores it; node latencies are then corrected by the runner's fitted Correction
(``holdout=True`` leaves the model being costed out of that fit, as the accuracy benchmark
does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cost_models.calibration import Correction, fit_correction
from cost_models.fitted import FittedCostModel
from cost_models.roofline import TENSOR_OPS, RooflineCostModel, workspace_bytes
from cost_models.single_node import SingleNodeBuilder, random_feeds
from partitioner.cluster.types import Cluster, DeviceSpec
from partitioner.costing.types import Cost, Supported, Unsupported
from partitioner.errors import ClusterError, CostModelError
from partitioner.graph.types import NodeInfo
from partitioner.profiling.cache import ProfileCache, ProfileRecord, runner_fingerprint
from partitioner.profiling.timing import (
    OthersLoad,
    add_probe,
    median_and_spread,
    statistic_of,
    time_calls,
)
from partitioner.registry import get_runner

log = logging.getLogger(__name__)

#: Prefix of cached errors that mean "could not measure", not "cannot run".
UNMEASURED = "unmeasured: "
#: Timing statistics: ``best`` (minimum of the repeats; robust on a shared machine, the
#: default) or ``median``.
STATISTICS = ("best", "median")
#: Models with more weight bytes than this are timed whole from their file, not the proto.
LARGE_MODEL_BYTES = int(1.5 * 2**30)


@dataclass
class ProfileStats:
    """What :meth:`ProfiledCostModel.prepare` did."""

    measured: int = 0
    """Signatures tried now (whatever came of it)."""
    reused: int = 0
    """Signatures whose cached row (measurement or verdict) was used as is."""
    failed: int = 0
    """Tries that gave no measurement: ``unsupported + unmeasured``."""
    unsupported: int = 0
    """Tries where the runtime refused the node (a verdict; cached)."""
    unmeasured: int = 0
    """Tries where our harness failed (never cached; costed by the fitted/roofline model)."""
    fallbacks: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """device id -> (signature, reason) of each signature that failed in the harness."""
    calibrated: dict[str, tuple[float, float]] = field(default_factory=dict)
    """device id -> (sum of node measurements, measured whole model - overhead)."""


def _short(exc: BaseException) -> str:
    """The runner's message on one line (at most 300 characters)."""
    text = " ".join(str(exc).split())
    return (text or type(exc).__name__)[:300]


class ProfiledCostModel:
    """Measured per-signature costs with fitted and roofline fallbacks."""

    name = "profiled"

    def __init__(
        self,
        cache: ProfileCache | str | Path | None = None,
        repeats: int = 15,
        warmup: int = 2,
        budget_s: float = 1.0,
        min_time_s: float = 0.05,
        measure: bool = True,
        calibrate: bool = False,
        holdout: bool = False,
        statistic: str = "best",
    ) -> None:
        self.cache = cache if isinstance(cache, ProfileCache) else ProfileCache(cache)
        self.repeats, self.warmup, self.budget_s = repeats, warmup, budget_s
        self.min_time_s = min_time_s
        self.measure, self.calibrate, self.holdout = measure, calibrate, holdout
        if statistic not in STATISTICS:
            raise CostModelError(f"profiled: statistic {statistic!r}: expected one of "
                                 f"{', '.join(STATISTICS)}")
        self.statistic = statistic
        self.fitted = FittedCostModel(self.cache, statistic)
        self.roofline = RooflineCostModel()
        self._runners: dict[str, Any] = {}
        self._fingerprints: dict[str, str] = {}
        self._builder_for: tuple[Any, SingleNodeBuilder] | None = None
        self._corrections: dict[tuple[str, str | None], Correction] = {}
        self._model_scales: dict[tuple[str, str], float | None] = {}
        self._overheads: dict[str, float] = {}
        #: Builds the feeds of a single-node model (a seam for tests).
        self.make_feeds: Callable[[Any], dict[str, Any]] = random_feeds
        #: (fingerprint, signature) -> why the harness could not measure it in this run.
        self._unmeasured: dict[tuple[str, str], str] = {}
        #: (signature, device id) -> (cost source, reason) of every local node costed by
        #: the fitted or roofline model instead of a measurement, since the last prepare().
        self.fallbacks: dict[tuple[str, str], tuple[str, str]] = {}

    # -- identities ------------------------------------------------------------------------
    def fingerprint(self, device: DeviceSpec) -> str:
        """Profile-cache key of ``device``'s runner configuration."""
        if device.id not in self._fingerprints:
            runner = self._runner(device)
            self._fingerprints[device.id] = runner_fingerprint(
                device.runner, runner.version(), device.runner_options
            )
        return self._fingerprints[device.id]

    def _runner(self, device: DeviceSpec) -> Any:
        if device.runner not in self._runners:
            self._runners[device.runner] = get_runner(device.runner)
        return self._runners[device.runner]

    def _builder(self, model: Any) -> SingleNodeBuilder:
        # Keyed by identity of the model object itself (never id(): ids are reused).
        if self._builder_for is None or self._builder_for[0] is not model:
            tensors = getattr(getattr(model, "facts", None), "tensors", None)
            self._builder_for = (model, SingleNodeBuilder(model.model, tensors))
        return self._builder_for[1]

    # -- measuring -------------------------------------------------------------------------
    def session_overhead(self, device: DeviceSpec) -> float:
        """Per-call overhead of ``device``'s runner measured now, in the same conditions and
        with the same timing loop as the nodes it is subtracted from (once per model object)."""
        fp = self.fingerprint(device)
        if fp not in self._overheads:
            probe, feeds = add_probe(1)
            prepared = self._runner(device).prepare(
                probe, dict(device.runner_options, label="overhead probe")
            )
            samples = time_calls(lambda: prepared.run(feeds), 10, 300)
            self._overheads[fp] = statistic_of(samples, self.statistic)
        return self._overheads[fp]

    def _harness_failure(self, fp: str, node: NodeInfo, device: DeviceSpec,
                         reason: str) -> ProfileRecord:
        """Our harness failed on ``node``: warn, remember it for this run, never cache it."""
        self._unmeasured[(fp, node.signature)] = reason
        log.warning("could not measure %s (%s) on %s, not cached (costed by the fitted or "
                    "roofline model instead): %s", node.name, node.qualified_op, device.id,
                    reason)
        return ProfileRecord(node.signature, node.qualified_op, float(node.flops),
                             float(node.bytes_read + node.bytes_written), 0.0, 0.0, 0,
                             UNMEASURED + reason)

    def measure_node(self, model: Any, node: NodeInfo, device: DeviceSpec) -> ProfileRecord:
        """Measure ``node`` alone on ``device`` now; cache a measurement or a verdict.

        Only two outcomes are cached: a measurement, and the runtime refusing to load the
        (well-formed, concretely shaped) single-node model twice in a row with the same
        message: "the runtime cannot run this node". Failures of our harness (no model or
        feed could be built, an exception in our code, a configuration error, a failure
        while running on synthetic data, a refusal that does not repeat) are logged and
        returned with an ``unmeasured: `` error but never cached, so a later run measures
        the node again instead of inheriting a failure that was ours.
        """
        fp = self.fingerprint(device)

        def record(median: float = 0.0, spread: float = 0.0, repeats: int = 0,
                   error: str | None = None, best: float | None = None) -> ProfileRecord:
            return ProfileRecord(node.signature, node.qualified_op, float(node.flops),
                                 float(node.bytes_read + node.bytes_written), median, spread,
                                 repeats, error, best)

        try:
            single = self.single_node_model(model, node)
            feeds = self.make_feeds(single)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is ours
            return self._harness_failure(fp, node, device, f"harness: {_short(exc)}")
        options = dict(device.runner_options, label=f"node {node.name} ({node.op_type})")
        runner = self._runner(device)
        try:
            prepared = runner.prepare(single, options)
        except ClusterError as exc:  # runner configuration, not the node
            return self._harness_failure(fp, node, device, f"configuration: {_short(exc)}")
        except Exception as first:  # the runtime refused: a verdict only if it repeats
            try:
                prepared = runner.prepare(single, options)
            except Exception as exc:
                if _short(exc) != _short(first):
                    return self._harness_failure(
                        fp, node, device,
                        f"flaky: the runtime refused twice with different messages: "
                        f"{_short(first)} / {_short(exc)}")
                loaded = self._load_with_computed_inputs(model, node, device, options,
                                                         _short(exc))
                if isinstance(loaded, str):
                    rec = record(error=loaded)
                    log.info("%s on %s: %s", node.name, device.id, rec.error)
                    self.cache.put(fp, rec)
                    return rec
                prepared, feeds = loaded
            else:
                log.warning("%s (%s) on %s: the runtime refused it once, then loaded it: %s",
                            node.name, node.qualified_op, device.id, _short(first))
        with OthersLoad() as others:
            samples = self._time(prepared, feeds)
            if isinstance(samples, str):
                # Synthetic values in computed shape inputs (an Expand's shape, a Reshape's
                # -1s from the attention mask) make the node fail; their real values may not.
                retry = self._load_with_computed_inputs(model, node, device, options, samples)
                if not isinstance(retry, str):
                    samples = self._time(*retry)
        if isinstance(samples, str):
            return self._harness_failure(fp, node, device,
                                         f"run on synthetic feeds failed: {samples}")
        median, spread = median_and_spread(samples)
        overhead = self.session_overhead(device)
        rec = record(max(median - overhead, 0.0), spread, len(samples),
                     best=max(min(samples) - overhead, 0.0))
        self._unmeasured.pop((fp, node.signature), None)
        if others.too_busy_to_cache:
            log.info("%s on %s timed while other processes took %.0f%% of the CPU: used, "
                     "not cached", node.name, device.id, 100 * (others.share or 0.0))
        else:
            self.cache.put(fp, rec)
        return rec

    def _time(self, prepared: Any, feeds: dict[str, Any]) -> list[float] | str:
        """Timed runs of ``prepared`` (seconds each), or why running it failed."""
        try:
            return time_calls(lambda: prepared.run(feeds), self.warmup, self.repeats,
                              self.budget_s, self.min_time_s)
        except Exception as exc:  # noqa: BLE001 - synthetic data, or our feeds
            return _short(exc)

    def _load_with_computed_inputs(self, model: Any, node: NodeInfo, device: DeviceSpec,
                                   options: dict[str, Any], refusal: str
                                   ) -> tuple[Any, dict[str, Any]] | str:
        """The runtime refused ``node`` alone, or failed on its synthetic feeds (``refusal``
        says how): load it again with the small integer inputs the graph computes (axes,
        sizes, shapes) as initializers holding their values, its minimal subgraph. Returns
        the prepared partition and its feeds, or the runtime's message, saying whether the
        minimal subgraph was tried."""
        builder = self._builder(model)
        proto = model.node_proto(node.name)
        try:
            constants = builder.computed_constants(proto)
            minimal = builder.build(proto, constants) if constants else None
            feeds = self.make_feeds(minimal) if minimal is not None else {}
        except Exception as exc:  # noqa: BLE001 - ours: the verdict on the node alone stands
            log.info("%s: no minimal subgraph (%s)", node.name, _short(exc))
            return f"{refusal} (alone; its computed inputs could not be evaluated)"
        if minimal is None:
            return refusal
        names = ", ".join(constants)
        try:
            prepared = self._runner(device).prepare(minimal, options)
        except Exception as exc:  # noqa: BLE001 - the runtime refused the minimal subgraph too
            return f"{_short(exc)} (also with its computed inputs {names} as constants)"
        log.info("%s (%s) on %s: refused alone (%s), loaded with %s as constants",
                 node.name, node.qualified_op, device.id, refusal, names)
        return prepared, feeds

    def single_node_model(self, model: Any, node: NodeInfo) -> Any:
        """The single-node model measured for ``node`` (inputs and outputs concretely shaped
        from the analysed graph). Every failure here is the harness's."""
        return self._builder(model).build(model.node_proto(node.name))

    def cached(self, fp: str, signature: str) -> ProfileRecord | None:
        """The cached row usable as is: a measurement or a runtime verdict (rows that say
        "unmeasured", which older harnesses wrote, are measured again)."""
        rec = self.cache.get(fp, signature)
        if rec is not None and rec.error is not None and rec.error.startswith(UNMEASURED):
            return None
        return rec

    def prepare(self, model: Any, cluster: Cluster,
                progress: Callable[[int, int], None] | None = None) -> ProfileStats:
        """Measure every distinct signature of ``model`` on every local device not cached yet.

        Args:
            model: The analysed model.
            cluster: Only devices with ``local=True`` are measured.
            progress: Called with ``(done, total)`` after each measurement.

        Returns:
            Counts of measured, reused and failed signatures (and calibrations made).
        """
        stats = ProfileStats()
        self._unmeasured.clear()  # a new run tries every harness failure again
        self.fallbacks.clear()
        todo: list[tuple[NodeInfo, DeviceSpec]] = []
        for device in (d for d in cluster.devices if d.local):
            fp, seen = self.fingerprint(device), set()
            for node in model.facts.nodes:
                if node.signature in seen:
                    continue
                seen.add(node.signature)
                if self.cached(fp, node.signature) is not None:
                    stats.reused += 1
                elif self.measure:
                    todo.append((node, device))
        for done, (node, device) in enumerate(todo, 1):
            rec = self.measure_node(model, node, device)
            stats.measured += 1
            stats.failed += rec.error is not None
            if rec.error is not None and rec.error.startswith(UNMEASURED):
                stats.unmeasured += 1
                stats.fallbacks.setdefault(device.id, []).append(
                    (node.signature, rec.error[len(UNMEASURED):]))
            elif rec.error is not None:
                stats.unsupported += 1
            if progress is not None:
                progress(done, len(todo))
        if self.calibrate:
            for device in (d for d in cluster.devices if d.local):
                known = self.cache.calibrations(self.fingerprint(device))
                row = known.get(model.facts.model_sha256)
                # Nothing new cached (harness failures are not): reuse it.
                if row is not None and stats.measured == stats.unmeasured:
                    stats.calibrated[device.id] = (row[0] + row[1], row[2])
                    continue
                pair = self.calibrate_model(model, device)
                if pair is not None:
                    stats.calibrated[device.id] = pair
        self._corrections.clear()
        self._model_scales.clear()
        self.fitted.refresh()
        return stats

    # -- calibration -----------------------------------------------------------------------
    def node_sums(self, model: Any, device: DeviceSpec) -> tuple[float, float] | None:
        """Sums of uncalibrated per-node latencies of ``model`` on ``device`` over tensor ops
        and over other ops (None when a node is unsupported there)."""
        tensor = other = 0.0
        for node in model.facts.nodes:
            cost = self._raw(model, node, device)
            if not isinstance(cost, Supported):
                return None
            if node.op_type in TENSOR_OPS:
                tensor += cost.latency_s
            else:
                other += cost.latency_s
        return tensor, other

    def measure_model(self, model: Any, device: DeviceSpec, repeats: int = 20,
                      budget_s: float = 5.0) -> float:
        """Whole-model latency on ``device`` (one session, overhead included), by the
        model's timing statistic."""
        options = dict(device.runner_options, label=f"whole model {model.facts.model_name}")
        source: Any = model.model
        weights = sum(n.weight_bytes for n in model.facts.nodes)
        if weights > LARGE_MODEL_BYTES and Path(str(model.source)).is_file():
            source = model.source  # protobuf cannot serialise > 2 GiB: let the runner read it
        prepared = self._runner(device).prepare(source, options)
        feeds = random_feeds(model.model)
        samples = time_calls(lambda: prepared.run(feeds), 3, repeats, budget_s, min_time_s=1.0)
        return statistic_of(samples, self.statistic)

    def calibrate_model(self, model: Any, device: DeviceSpec) -> tuple[float, float] | None:
        """Time ``model`` whole on ``device`` and store it as a calibration row.

        Returns:
            (sum of alone-measured node latencies, measured whole model - overhead), or None
            when a node is unsupported there or the model cannot run whole.
        """
        sums = self.node_sums(model, device)
        if sums is None or sum(sums) <= 0:
            log.info("not calibrating %s: a node is unsupported or unmeasured", device.id)
            return None
        try:
            measured = self.measure_model(model, device) - device.call_overhead_s
        except Exception as exc:  # calibration is optional; never fail costing for it
            log.warning("cannot time %s whole on %s: %s", model.facts.model_name, device.id,
                        _short(exc))
            return None
        row = (*sums, max(measured, 0.0), device.call_overhead_s, len(model.facts.nodes))
        self.cache.put_calibration(self.fingerprint(device), model.facts.model_sha256, row)
        self._model_scales.pop((self.fingerprint(device), model.facts.model_sha256), None)
        return sum(sums), measured

    def correction(self, device: DeviceSpec, exclude: str | None = None) -> Correction:
        """The runner's fusion/dispatch correction fitted on calibrated models (identity if
        none), leaving out model ``exclude``."""
        fp = self.fingerprint(device)
        key = (fp, exclude)
        if key not in self._corrections:
            self._corrections[key] = fit_correction(self.cache.calibrations(fp), exclude)
        return self._corrections[key]

    # -- costing ---------------------------------------------------------------------------
    def _raw(self, model: Any, node: NodeInfo, device: DeviceSpec) -> Cost:
        fp = self.fingerprint(device)
        rec = self.cached(fp, node.signature)
        reason = self._unmeasured.get((fp, node.signature))
        if rec is None and reason is None:
            if self.measure:
                rec = self.measure_node(model, node, device)
                if rec.error is not None and rec.error.startswith(UNMEASURED):
                    reason, rec = rec.error[len(UNMEASURED):], None
            else:
                reason = "not profiled (measuring is off)"
        if rec is not None and rec.error is None:
            return Supported(rec.latency(self.statistic), workspace_bytes(node, device),
                             self.name)
        if rec is not None:
            return Unsupported(f"{device.id}: {device.runner} cannot run it: {rec.error}")
        predicted = self.fitted.predict(fp, node)
        cost: Cost
        if predicted is not None:
            cost = Supported(predicted, workspace_bytes(node, device), "fitted")
        else:
            cost = self.roofline.estimate(model, node, device)
        source = cost.source if isinstance(cost, Supported) else "unsupported"
        self.fallbacks[(node.signature, device.id)] = (source, reason or "unmeasured")
        return cost

    def estimate(self, model: Any, node: NodeInfo, device: DeviceSpec) -> Cost:
        """Measured (or fitted) latency, calibrated; the roofline for devices off this host."""
        if not device.local:
            return self.roofline.estimate(model, node, device)
        if node.op_type in device.unsupported_ops or node.qualified_op in device.unsupported_ops:
            return Unsupported(f"{device.id}: {node.qualified_op} is listed in unsupported_ops")
        cost = self._raw(model, node, device)
        if not isinstance(cost, Supported) or cost.source == "roofline":
            return cost
        scale = None if self.holdout else self.model_scale(model, device)
        if scale is not None:
            return Supported(cost.latency_s * scale, cost.memory_bytes, cost.source)
        exclude = model.facts.model_sha256 if self.holdout else None
        latency = self.correction(device, exclude).apply(cost.latency_s,
                                                         node.op_type in TENSOR_OPS)
        return Supported(latency, cost.memory_bytes, cost.source)

    def model_scale(self, model: Any, device: DeviceSpec) -> float | None:
        """Whole-model time of *this* model on ``device`` over its per-node sum, when it was
        timed whole at profile time (``calibrate=True``); None otherwise.

        This is the partition-level calibration: fusion and layout effects differ between
        models far more than between the nodes of one model, so scaling this model's nodes
        to its own measured whole time beats a correction fitted on other models.
        """
        key = (self.fingerprint(device), model.facts.model_sha256)
        if key not in self._model_scales:
            row = self.cache.calibrations(key[0]).get(key[1])
            total = row[0] + row[1] if row is not None else 0.0
            self._model_scales[key] = row[2] / total if row and total > 0 and row[2] > 0 else None
        return self._model_scales[key]


def create(**options: Any) -> ProfiledCostModel:
    """Registry entry point: ``cache``, ``repeats``, ``warmup``, ``budget_s``, ``measure``,
    ``calibrate``, ``holdout`` (see :class:`ProfiledCostModel`)."""
    return ProfiledCostModel(**options)
