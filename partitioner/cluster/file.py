"""Cluster files: TOML parsing and validation, unit strings, presets, and ``load_cluster``."""

from __future__ import annotations

import difflib
import importlib.util
import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from partitioner.cluster.precision import PRECISIONS, precision_name
from partitioner.cluster.types import DEFAULT_HOST_COPY_BANDWIDTH, Cluster, DeviceSpec, Link
from partitioner.errors import ClusterError, RunnerNotAvailableError

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).parent / "presets"
#: File in PRESET_DIR holding reusable device definitions (``[device.<name>]`` tables).
DEVICE_PRESETS_FILE = "devices.toml"

DEVICE_CLASSES = ("cpu", "gpu", "npu")
DTYPES = ("float32", "float16", "bfloat16", "int8", "float64")
KNOWN_RUNNERS = ("onnxruntime", "openvino", "reference", "null")

CLUSTER_KEYS = {"name", "host_copy_bandwidth", "fallback_device", "description"}
DEVICE_KEYS = {
    "id", "class", "runner", "options", "memory", "peak_flops", "memory_bandwidth",
    "call_overhead_us", "price_per_hour", "power_w", "processor", "unsupported_ops",
    "description", "use", "local", "copy_engine", "precision", "host",
}
DEVICE_REQUIRED = ("id", "class", "runner", "memory", "peak_flops", "memory_bandwidth")
LINK_KEYS = {"src", "dst", "bandwidth", "latency_us", "bidirectional", "copy_engine"}
LINK_REQUIRED = ("src", "dst", "bandwidth")
#: Runner options accepted in ``options = {...}`` (union of what the runners in backends/ take).
OPTION_KEYS = {
    "provider", "provider_options", "threads", "inter_threads", "affinity", "allow_spinning",
    "optimization", "allow_fallback_ops", "label", "device", "hint", "precision", "streams",
    "config",
}

#: Prefixes as SI writes them: ``k`` (``K`` tolerated), ``M``, ``G``, ``T``, ``P`` are powers of
#: 1000, ``Ki`` ... ``Pi`` powers of 1024. Lower-case ``m`` (milli), ``g``, ``t``, ``p`` are not
#: prefixes: ``"24gb"`` is refused rather than guessed.
_PREFIXES = {
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
    "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "": 1.0,
}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(.*?)\s*$")
_CPU_LIST = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
#: Units by kind, case-sensitive: ``B`` is a byte and ``b`` a bit, so ``"25GB/s"`` and
#: ``"25GBps"`` are bytes per second, ``"25Gb/s"`` and ``"25Gbps"`` bits per second (/ 8).
_UNITS: dict[str, dict[str, float]] = {
    "bytes": {"B": 1.0, "byte": 1.0, "bytes": 1.0},
    "rate": {
        "B/s": 1.0, "Bps": 1.0, "byte/s": 1.0, "bytes/s": 1.0,
        "b/s": 0.125, "bps": 0.125, "bit/s": 0.125, "bits/s": 0.125,
    },
    "flops": {"FLOP/s": 1.0, "FLOPS": 1.0, "flop/s": 1.0, "flops": 1.0, "Flop/s": 1.0},
}
_KIND_NAMES = {"bytes": "a size in bytes", "rate": "a bandwidth", "flops": "a FLOP rate"}
_EXAMPLES = {
    "bytes": "'24GB', '80GiB', '512MiB'",
    "rate": "'25GB/s' or '25GBps' (bytes per second), '100Gb/s' or '100Gbps' (bits per second)",
    "flops": "'121TFLOP/s', '7.37TFLOPS'",
}


def _split_unit(unit: str, kind: str) -> float | None:
    """The factor of ``unit`` (prefix and unit, e.g. ``"GiB"``, ``"Gbps"``) for ``kind``."""
    for prefix, factor in _PREFIXES.items():
        if unit.startswith(prefix) and unit[len(prefix) :] in _UNITS[kind]:
            return factor * _UNITS[kind][unit[len(prefix) :]]
    return None


def _unit_problem(unit: str, kind: str) -> str:
    """Why ``unit`` is refused for ``kind``, with what to write instead."""
    if not unit:
        return "a string needs a unit (or write a plain number of base units)"
    if unit in _PREFIXES:
        return f"{unit!r} is a prefix without a unit"
    if kind == "rate" and _split_unit(unit, "bytes") is not None:
        return f"{unit!r} is an amount, not a rate: add '/s'"
    if kind == "rate" and unit.endswith("s") and _split_unit(unit[:-1], "bytes") is not None:
        return f"{unit!r} is ambiguous: write '{unit[:-1]}/s' or '{unit[:-1]}ps'"
    if kind == "rate" and unit.lower().endswith(("bs", "b")):
        return f"{unit!r} is ambiguous: say bytes (B/s, Bps) or bits (b/s, bps) per second"
    if kind == "bytes" and _split_unit(unit, "rate") is not None:
        return f"{unit!r} is a rate; a size takes bytes"
    if kind == "bytes" and unit.endswith("b"):
        return f"{unit!r} would be bits; sizes are in bytes: 'B' (b is a bit)"
    if unit[:1] in ("m", "g", "t", "p") and _split_unit(unit[:1].upper() + unit[1:], kind):
        return (
            f"{unit!r}: prefixes are k, M, G, T, P (powers of 1000) or Ki, Mi, Gi, Ti, Pi "
            f"(powers of 1024), case as written ('m' would be milli)"
        )
    return f"unknown unit {unit!r}"


def parse_quantity(value: Any, kind: str, where: str) -> float:
    """Parse a number or a unit string such as ``"80GiB"``, ``"3.35TB/s"``, ``"989 TFLOP/s"``.

    Units follow the usual convention, case-sensitively: ``B`` is a byte and ``b`` a bit, so
    ``GB/s`` and ``GBps`` are bytes per second and ``Gb/s``, ``Gbps`` and ``Mbps`` bits per
    second (divided by 8 here). A unit that could mean either (``"25gbs"``), a bandwidth
    without ``/s`` (``"25GB"``), a size in bits (``"24Gb"``) and a string without a unit
    (``"24G"``, ``"1e9"``) are refused. Plain numbers are base units: bytes, bytes per
    second, FLOP/s.

    Args:
        value: An int/float, or a string: a number, an optional SI (k, M, G, T, P) or binary
            (Ki, Mi, Gi, Ti, Pi) prefix and a unit matching ``kind``.
        kind: ``"bytes"``, ``"rate"`` (a bandwidth) or ``"flops"``.
        where: Context for error messages: the file and key, e.g. ``"c.toml: device 'gpu0'
            key 'memory'"``.

    Returns:
        The quantity in base units (bytes, bytes per second, FLOP/s).

    Raises:
        ClusterError: the value is not a positive quantity of the right kind; the message
            starts with ``where`` and says what to write instead.
    """
    if isinstance(value, bool):
        raise ClusterError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _NUMBER.match(value)
        unit = match.group(2) if match else ""
        factor = _split_unit(unit, kind) if unit else None
        if match is None or factor is None:
            why = _unit_problem(unit, kind) if match else "no number"
            raise ClusterError(
                f"{where}: cannot parse {value!r} as {_KIND_NAMES[kind]}: {why} "
                f"(examples: {_EXAMPLES[kind]})"
            )
        number = float(match.group(1)) * factor
    else:
        raise ClusterError(f"{where}: expected a number or a unit string, got {value!r}")
    if not number > 0:
        raise ClusterError(f"{where}: must be positive, got {value!r}")
    if number == float("inf"):
        raise ClusterError(f"{where}: must be finite, got {value!r}")
    return number


def _non_negative(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClusterError(f"{where}: expected a number, got {value!r}")
    if value < 0:
        raise ClusterError(f"{where}: must not be negative, got {value!r}")
    return float(value)


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ClusterError(
            f"{where}: unknown key(s) {', '.join(hints)}; known keys: {', '.join(sorted(allowed))}"
        )


def _str(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ClusterError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
    return value


def _runner_options(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ClusterError(f"{where}: key 'options' must be an inline table, got {raw!r}")
    _check_keys(raw, OPTION_KEYS, f"{where} options")
    options = dict(raw)
    if "threads" in options:
        threads = options["threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ClusterError(
                f"{where}: option 'threads' must be an integer >= 0, got {threads!r}"
            )
    if "affinity" in options:
        aff = options["affinity"]
        if isinstance(aff, int) and not isinstance(aff, bool):
            options["affinity"] = str(aff)
        elif isinstance(aff, list):
            options["affinity"] = ",".join(str(a) for a in aff)
        elif not isinstance(aff, str) or not _CPU_LIST.fullmatch(aff.replace(" ", "")):
            raise ClusterError(
                f"{where}: option 'affinity' must be CPU ids like '0,1', got {aff!r}"
            )
    return options


def _runner_known(runner: str) -> bool:
    if runner in KNOWN_RUNNERS:
        return True
    try:
        return importlib.util.find_spec(f"backends.{runner}_runner") is not None
    except (ImportError, ValueError):
        return False


def _copy_engine(table: Mapping[str, Any], where: str) -> bool | None:
    """The optional ``copy_engine`` flag: a TOML boolean, None when absent."""
    value = table.get("copy_engine")
    if value is not None and not isinstance(value, bool):
        raise ClusterError(f"{where}: key 'copy_engine' must be true or false, got {value!r}")
    return value


def _precision(table: Mapping[str, Any], where: str) -> str:
    """The optional ``precision`` key: ``f32`` (default), ``f16`` or ``bf16``."""
    value = table.get("precision", "f32")
    name = precision_name(value) if isinstance(value, str) else None
    if name is None:
        raise ClusterError(f"{where}: key 'precision' is {value!r}; expected one of "
                           f"{', '.join(PRECISIONS)}")
    return name


def parse_device(table: Mapping[str, Any], where: str) -> DeviceSpec:
    """Validate one ``[[device]]`` table (after ``use =`` expansion) into a DeviceSpec."""
    _check_keys(table, DEVICE_KEYS, where)
    for key in DEVICE_REQUIRED:
        if key not in table:
            raise ClusterError(f"{where}: missing required key {key!r}")
    device_id = _str(table, "id", where)
    device_class = _str(table, "class", where)
    if device_class not in DEVICE_CLASSES:
        raise ClusterError(
            f"{where}: key 'class' is {device_class!r}; expected one of {', '.join(DEVICE_CLASSES)}"
        )
    runner = _str(table, "runner", where)
    if not _runner_known(runner):
        raise ClusterError(
            f"{where}: key 'runner' names unknown runner {runner!r} "
            f"(known: {', '.join(KNOWN_RUNNERS)})"
        )
    peak_raw = table["peak_flops"]
    if not isinstance(peak_raw, dict):
        raise ClusterError(f"{where}: key 'peak_flops' must be a table by dtype, got {peak_raw!r}")
    _check_keys(peak_raw, set(DTYPES), f"{where} peak_flops")
    if "float32" not in peak_raw:
        raise ClusterError(f"{where}: key 'peak_flops' needs a 'float32' entry")
    peak = {
        k: parse_quantity(v, "flops", f"{where} key 'peak_flops.{k}'") for k, v in peak_raw.items()
    }
    unsupported = table.get("unsupported_ops", [])
    if not isinstance(unsupported, list) or not all(isinstance(o, str) for o in unsupported):
        raise ClusterError(f"{where}: key 'unsupported_ops' must be a list of op names")
    processor = table.get("processor")
    if processor is not None and not isinstance(processor, str):
        raise ClusterError(f"{where}: key 'processor' must be a string, got {processor!r}")
    host = table.get("host")
    if host is not None and (not isinstance(host, str) or not host.strip()):
        raise ClusterError(f"{where}: key 'host' must be a non-empty string, got {host!r}")
    if host is not None:
        host = host.strip()  # " box-a " is box-a: one machine, one Ray node
    return DeviceSpec(
        id=device_id,
        device_class=device_class,
        runner=runner,
        runner_options=_runner_options(table.get("options", {}), where),
        memory_bytes=int(parse_quantity(table["memory"], "bytes", f"{where} key 'memory'")),
        peak_flops=peak,
        memory_bandwidth=parse_quantity(
            table["memory_bandwidth"], "rate", f"{where} key 'memory_bandwidth'"
        ),
        call_overhead_s=_non_negative(table.get("call_overhead_us", 0.0),
                                      f"{where} key 'call_overhead_us'") * 1e-6,
        price_per_hour=_non_negative(
            table.get("price_per_hour", 0.0), f"{where} key 'price_per_hour'"
        ),
        power_w=_non_negative(table.get("power_w", 0.0), f"{where} key 'power_w'"),
        processor=processor,
        unsupported_ops=tuple(unsupported),
        description=str(table.get("description", "")),
        local=bool(table.get("local", False)),
        copy_engine=_copy_engine(table, where),
        precision=_precision(table, where),
        host=host,
    )


def _parse_links(raw: Any, ids: set[str], source: str) -> list[Link]:
    if not isinstance(raw, list):
        raise ClusterError(f"{source}: 'link' must be an array of tables ([[link]])")
    links: list[Link] = []
    seen: set[tuple[str, str]] = set()
    for i, table in enumerate(raw):
        where = f"{source}: link #{i + 1}"
        if not isinstance(table, dict):
            raise ClusterError(f"{where}: expected a table")
        _check_keys(table, LINK_KEYS, where)
        for key in LINK_REQUIRED:
            if key not in table:
                raise ClusterError(f"{where}: missing required key {key!r}")
        src, dst = _str(table, "src", where), _str(table, "dst", where)
        where = f"{source}: link {src}->{dst}"
        for key, dev in (("src", src), ("dst", dst)):
            if dev not in ids:
                raise ClusterError(
                    f"{where}: key {key!r} names unknown device {dev!r} "
                    f"(devices: {', '.join(sorted(ids))})"
                )
        if src == dst:
            raise ClusterError(f"{where}: a link must join two different devices")
        bandwidth = parse_quantity(table["bandwidth"], "rate", f"{where} key 'bandwidth'")
        latency = _non_negative(table.get("latency_us", 0.0), f"{where} key 'latency_us'") * 1e-6
        engine = _copy_engine(table, where)
        pairs = [(src, dst)] + ([(dst, src)] if table.get("bidirectional", False) else [])
        for a, b in pairs:
            if (a, b) in seen:
                raise ClusterError(f"{source}: link {a}->{b} is defined twice")
            seen.add((a, b))
            links.append(Link(a, b, bandwidth, latency, engine))
    return links


def _device_presets() -> dict[str, dict[str, Any]]:
    path = PRESET_DIR / DEVICE_PRESETS_FILE
    data = _read_toml(path)
    presets = data.get("device", {})
    assert isinstance(presets, dict), f"{path}: [device.<name>] tables expected"
    return presets


def _expand_use(table: dict[str, Any], where: str) -> dict[str, Any]:
    if "use" not in table:
        return table
    name = table["use"]
    presets = _device_presets()
    if name not in presets:
        raise ClusterError(
            f"{where}: key 'use' names unknown device preset {name!r} "
            f"(known: {', '.join(sorted(presets))})"
        )
    merged = dict(presets[name])
    merged.update({k: v for k, v in table.items() if k != "use"})
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClusterError(f"cluster file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterError(f"cannot read cluster file {path}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClusterError(f"{path}: malformed TOML: {exc}") from None


def _counted(table: dict[str, Any], where: str,
             instances: dict[str, list[str]]) -> list[dict[str, Any]]:
    """``count = N`` (N > 1): N copies of the device, ids and processors suffixed ``-0`` ..
    ``-N-1``; links naming the base id join every instance (``_expand_counted_links``)."""
    if "count" not in table:
        return [table]
    count = table["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ClusterError(f"{where}: key 'count' must be a positive integer, got {count!r}")
    base = {k: v for k, v in table.items() if k != "count"}
    if count == 1:
        return [base]
    ids = [f"{base.get('id')}-{i}" for i in range(count)]
    instances[str(base.get("id"))] = ids
    out = []
    for i, device_id in enumerate(ids):
        copy = dict(base, id=device_id)
        if isinstance(base.get("processor"), str):
            copy["processor"] = f"{base['processor']}-{i}"
        out.append(copy)
    return out


def _expand_counted_links(links: list[Link], instances: dict[str, list[str]]) -> list[Link]:
    out = []
    for link in links:
        for src in instances.get(link.src, [link.src]):
            for dst in instances.get(link.dst, [link.dst]):
                out.append(Link(src, dst, link.bandwidth, link.latency_s, link.copy_engine))
    return out


def cluster_from_dict(data: Mapping[str, Any], source: str, default_name: str) -> Cluster:
    """Validate a parsed cluster document (the TOML structure) into a Cluster.

    Raises:
        ClusterError: on any invalid key or value; the message names the key and device.
    """
    _check_keys(data, {"cluster", "device", "link"}, f"{source}: top level")
    head = data.get("cluster", {})
    if not isinstance(head, dict):
        raise ClusterError(f"{source}: [cluster] must be a table")
    _check_keys(head, CLUSTER_KEYS, f"{source}: [cluster]")
    raw_devices = data.get("device")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise ClusterError(f"{source}: needs at least one [[device]] table")
    devices: list[DeviceSpec] = []
    instances: dict[str, list[str]] = {}  # a counted device's id -> its instances' ids
    for i, table in enumerate(raw_devices):
        where = f"{source}: device #{i + 1}"
        if not isinstance(table, dict):
            raise ClusterError(f"{where}: expected a table")
        if "id" in table and isinstance(table["id"], str):
            where = f"{source}: device {table['id']!r}"
        for instance in _counted(_expand_use(table, where), where, instances):
            device = parse_device(instance, where)
            if any(d.id == device.id for d in devices):
                raise ClusterError(f"{source}: device id {device.id!r} is defined twice")
            devices.append(device)
    ids = {d.id for d in devices}
    links = _expand_counted_links(_parse_links(data.get("link", []), ids | set(instances),
                                               source), instances)
    host_bw = DEFAULT_HOST_COPY_BANDWIDTH
    if "host_copy_bandwidth" in head:
        host_bw = parse_quantity(head["host_copy_bandwidth"], "rate",
                                 f"{source}: [cluster] key 'host_copy_bandwidth'")
    fallback = head.get("fallback_device")
    if fallback is not None and fallback not in ids:
        raise ClusterError(
            f"{source}: [cluster] key 'fallback_device' names unknown device {fallback!r} "
            f"(devices: {', '.join(sorted(ids))})"
        )
    if fallback is None:
        fallback = next((d.id for d in devices if d.device_class == "cpu"), None)
    name = head.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ClusterError(f"{source}: [cluster] key 'name' must be a non-empty string")
    return Cluster(name, tuple(devices), tuple(links), host_bw, fallback)


def cluster_from_toml(path: Path) -> Cluster:
    """Load and validate a cluster TOML file (format: ``docs/cluster-format.md``).

    Runner installation is not checked here: planning clusters may describe hardware that
    is not present. Call :func:`check_runners_installed` before running a plan.

    Raises:
        ClusterError: malformed TOML (with line and column), unknown or missing keys,
            non-positive capacities, duplicate ids, links to unknown devices.
    """
    path = Path(path)
    return cluster_from_dict(_read_toml(path), str(path), path.stem)


def list_presets() -> list[str]:
    """Names of the cluster presets shipped in ``partitioner/cluster/presets`` (sorted)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml") if p.name != DEVICE_PRESETS_FILE)


def check_runners_installed(cluster: Cluster) -> None:
    """Raise if any device's runner library (or ONNX Runtime provider) is not installed here.

    Raises:
        RunnerNotAvailableError: names the device, the runner and the extra to install.
    """
    from partitioner.registry import RUNNER_EXTRAS, get_runner

    for device in cluster.devices:
        try:
            get_runner(device.runner)
        except ClusterError as exc:
            hint = RUNNER_EXTRAS.get(device.runner, "")
            raise RunnerNotAvailableError(
                f"device {device.id!r}: runner {device.runner!r} is not installed here"
                + (f" ({hint})" if hint and hint not in str(exc) else "") + f": {exc}"
            ) from None
        provider = device.runner_options.get("provider")
        if device.runner == "onnxruntime" and provider:
            import onnxruntime

            if provider not in onnxruntime.get_available_providers():
                available = ", ".join(onnxruntime.get_available_providers())
                raise RunnerNotAvailableError(
                    f"device {device.id!r}: ONNX Runtime execution provider {provider!r} is not "
                    f"available here (available: {available})"
                )


def load_cluster(spec: str) -> Cluster:
    """Resolve a ``--cluster`` value.

    Args:
        spec: ``"local"`` (runners detected here), ``"local-cores"`` (one ONNX Runtime
            device per CPU core), a preset name from :func:`list_presets`, or a path to a
            ``.toml`` cluster file.

    Raises:
        ClusterError: unknown spec, or the file is invalid.
    """
    if spec in ("local", "local-cores"):
        from partitioner.cluster.local import detect_local_cluster

        return detect_local_cluster(cores=spec == "local-cores")
    if spec in list_presets():
        return cluster_from_toml(PRESET_DIR / f"{spec}.toml")
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return cluster_from_toml(path)
    raise ClusterError(
        f"--cluster {spec!r}: not 'local', 'local-cores', a preset "
        f"({', '.join(list_presets())}) or an existing .toml file"
    )
