"""Device, link and cluster types: what hardware a plan may use (plain data, validated on load)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: Bandwidth assumed between devices that share host memory when no link is given (B/s).
DEFAULT_HOST_COPY_BANDWIDTH = 10e9

#: Assumed between devices on two different hosts (``host`` keys) when no link joins them:
#: a 10 Gb/s Ethernet NIC (1.25 GB/s) and 1 ms per transfer, Ray's documented cost of a
#: plain actor call (every boundary between hosts is one). Host memory's copy bandwidth would
#: price a network as a memcpy; ``hetpart profile --links`` measures the real one.
DEFAULT_NETWORK_BANDWIDTH = 1.25e9
DEFAULT_NETWORK_LATENCY_S = 1e-3

#: Whether a device class moves data on a copy engine (a transfer then overlaps its compute)
#: when a device or link does not say (``copy_engine`` in a cluster file).
#:
#: * ``gpu``: True. CUDA GPUs have asynchronous copy engines (``asyncEngineCount`` >= 1 on
#:   every data-center GPU since Fermi; ``cudaMemcpyAsync`` from pinned memory overlaps kernel
#:   execution: CUDA C++ Programming Guide, "Asynchronous Concurrent Execution", "Overlap of
#:   Data Transfer and Kernel Execution").
#: * ``cpu``: False. A CPU copies with its own cores (``memcpy``, NumPy copies, a synchronous
#:   ``run()`` handing tensors over on the calling thread): the cores that copy do not compute.
#: * ``npu``: False. Edge NPUs share host memory and their runtimes hand tensors over
#:   synchronously on the calling thread (OpenVINO ``infer()`` / ``set_tensor`` without
#:   remote tensors); the conservative choice is that a copy occupies the device.
DEFAULT_COPY_ENGINE = {"cpu": False, "gpu": True, "npu": False}


@dataclass(frozen=True)
class DeviceSpec:
    """One device a plan may place operators on.

    Attributes:
        id: Unique device id within the cluster, e.g. ``"ort-cpu"``.
        device_class: ``"cpu"``, ``"gpu"``, ``"npu"`` (drives the op-support table).
        runner: Runner name (``onnxruntime``, ``openvino``, ``reference``, ``null``).
        runner_options: Runner options, e.g. ``{"provider": "CPUExecutionProvider",
            "threads": 1, "affinity": "0"}``.
        memory_bytes: Capacity available for weights plus activations.
        peak_flops: Peak FLOP/s by dtype name (``"float32"``, ``"float16"``, ``"bfloat16"``,
            ``"int8"``); ``"float32"`` is required.
        memory_bandwidth: Bytes per second.
        call_overhead_s: Fixed cost of one runner call (one partition execution).
        price_per_hour: Currency units per hour (0 for owned hardware).
        power_w: Average power while busy, in watts.
        processor: Devices sharing a value share one physical processor and never run
            at the same time (e.g. ONNX Runtime and OpenVINO on the same CPU cores);
            ``"core0+core1"`` spans several (shares each of them).
        unsupported_ops: Op types this particular device cannot run, beyond its class table.
        description: Free text, e.g. the preset's source.
        local: True when the device is on this machine (``--cluster local*`` or ``local =
            true`` in a cluster file), so its costs can be measured rather than estimated.
        copy_engine: True when the device moves data on a copy engine, so that transfers
            to and from it overlap its compute; False when a transfer occupies it for the
            copy's duration (CPU ``memcpy``, synchronous copies, host hand-offs); None
            (default) takes ``DEFAULT_COPY_ENGINE`` of its class (``has_copy_engine``).
        precision: The precision the device computes in: ``"f32"`` (default), ``"f16"`` or
            ``"bf16"``; plans use a lower one only when allowed (``CompileOptions.precision``
            or ``tolerance``).
        host: The machine the device lives on (free text, e.g. ``"gpu-box"``), or None when
            the cluster does not say. Devices naming one host run on one Ray node
            (``hetpart run --ray``); plans record it only when set.
    """

    id: str
    device_class: str
    runner: str
    memory_bytes: int
    peak_flops: dict[str, float] = field(hash=False)
    memory_bandwidth: float
    call_overhead_s: float = 0.0
    runner_options: dict[str, Any] = field(default_factory=dict, hash=False)
    price_per_hour: float = 0.0
    power_w: float = 0.0
    processor: str | None = None
    unsupported_ops: tuple[str, ...] = ()
    description: str = ""
    local: bool = False
    copy_engine: bool | None = None
    precision: str = "f32"
    host: str | None = None

    @property
    def machine(self) -> str:
        """The machine the device is on: its ``host``, else its own id (a device naming no
        host is a machine of its own wherever hosts are told apart)."""
        return self.host or self.id

    @property
    def has_copy_engine(self) -> bool:
        """``copy_engine``, or its class default (``DEFAULT_COPY_ENGINE``) when unset."""
        if self.copy_engine is not None:
            return self.copy_engine
        return DEFAULT_COPY_ENGINE.get(self.device_class, False)

    def flops_for(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``, falling back to float32."""
        return self.peak_flops.get(dtype, self.peak_flops["float32"])


@dataclass(frozen=True)
class Link:
    """A directed connection between two devices (use two links for both directions).

    Attributes:
        src: Source device id.
        dst: Destination device id.
        bandwidth: Bytes per second.
        latency_s: Fixed cost per transfer.
        copy_engine: None (default): each endpoint is busy for a transfer's duration unless
            it has a copy engine (``DeviceSpec.has_copy_engine``). True: the link moves data
            on its own engine (DMA, RDMA), neither endpoint is busy. False: both endpoints
            are busy for every transfer (synchronous copies).
    """

    src: str
    dst: str
    bandwidth: float
    latency_s: float = 0.0
    copy_engine: bool | None = None


@dataclass(frozen=True)
class Cluster:
    """A validated set of devices and the links between them.

    Attributes:
        name: Cluster name (preset name or file stem).
        devices: Devices in priority order (first = most preferred by priority-greedy).
        links: Directed links; a missing pair falls back to ``host_copy_bandwidth``, or
            between devices on two different hosts to the default network
            (``DEFAULT_NETWORK_BANDWIDTH``, ``DEFAULT_NETWORK_LATENCY_S``).
        host_copy_bandwidth: Bytes per second for copies between devices with no link
            (devices on one host); measured for ``local`` clusters.
        fallback_device: Device id that priority-greedy falls back to (usually the CPU).
    """

    name: str
    devices: tuple[DeviceSpec, ...]
    links: tuple[Link, ...] = ()
    host_copy_bandwidth: float = DEFAULT_HOST_COPY_BANDWIDTH
    fallback_device: str | None = None

    def device(self, device_id: str) -> DeviceSpec:
        """Return the device ``device_id``; KeyError if it is not in the cluster."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)

    def link(self, src: str, dst: str) -> Link:
        """The link from ``src`` to ``dst``, or an implied one: the default network between
        two hosts, else host memory."""
        for link in self.links:
            if link.src == src and link.dst == dst:
                return link
        if (src, dst) in self.unlinked_host_pairs:
            return Link(src, dst, DEFAULT_NETWORK_BANDWIDTH, DEFAULT_NETWORK_LATENCY_S)
        return Link(src, dst, self.host_copy_bandwidth, 0.0)

    @cached_property
    def unlinked_host_pairs(self) -> frozenset[tuple[str, str]]:
        """Ordered device pairs on two different machines (``DeviceSpec.machine``, as Ray
        groups them: ``distributed.resources.hosts_of``) that no link joins; a cluster naming
        no host is one machine."""
        if not any(d.host for d in self.devices):
            return frozenset()
        linked = {(lk.src, lk.dst) for lk in self.links}
        return frozenset((a.id, b.id) for a in self.devices for b in self.devices
                         if a.machine != b.machine and (a.id, b.id) not in linked)

    def transfer_time(self, src: str, dst: str, nbytes: int) -> float:
        """Seconds to move ``nbytes`` from ``src`` to ``dst`` (0 on the same device)."""
        if src == dst:
            return 0.0
        link = self.link(src, dst)
        return link.latency_s + nbytes / link.bandwidth

    def transfer_occupies(self, src: str, dst: str) -> tuple[bool, bool]:
        """Whether a transfer ``src -> dst`` keeps (source, destination) busy for its duration.

        A link's ``copy_engine`` decides for both ends when set; otherwise an end is busy
        unless its device has a copy engine. (False, False) on the same device.
        """
        if src == dst:
            return False, False
        override = self.link(src, dst).copy_engine
        if override is not None:
            return not override, not override
        return not self.device(src).has_copy_engine, not self.device(dst).has_copy_engine

    def shares_processor(self, a: str, b: str) -> bool:
        """True when devices ``a`` and ``b`` are the same physical processor."""
        if a == b:
            return True
        pa, pb = self.device(a).processor, self.device(b).processor
        # "core0+core1": a device spanning several processors shares each of them.
        return pa is not None and pb is not None and bool(
            set(pa.split("+")) & set(pb.split("+")))

    def concurrent(self, a: str, b: str) -> bool:
        """True when devices ``a`` and ``b`` can work at the same time."""
        return not self.shares_processor(a, b)

    def restricted_to(self, device_ids: list[str]) -> Cluster:
        """A copy holding only ``device_ids`` (order kept as given); KeyError on unknown ids."""
        devices = tuple(self.device(i) for i in device_ids)
        keep = set(device_ids)
        links = tuple(lk for lk in self.links if lk.src in keep and lk.dst in keep)
        fallback = self.fallback_device if self.fallback_device in keep else None
        return Cluster(self.name, devices, links, self.host_copy_bandwidth, fallback)
