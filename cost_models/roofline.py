"""Spec-sheet roofline cost model, and the op-support table per device class (data with reasons).

latency = max(flops / (peak[dtype] x compute efficiency), bytes / (bandwidth x memory efficiency))

Efficiency factors (documented guesses, to be replaced by measurements where possible):

* ``TENSOR_EFFICIENCY`` = 0.6: dense MatMul/Gemm/Conv rarely exceed ~60-70% of datasheet
  peak at inference batch sizes (cuBLAS/oneDNN reach ~70-80% only on large square GEMMs).
* Other ops run on vector units, not tensor cores: their compute roof is the float32 peak
  x ``VECTOR_EFFICIENCY`` = 0.5.
* ``MEMORY_EFFICIENCY`` = 0.8: STREAM-like kernels reach ~80% of the datasheet bandwidth.
* Shape-only ops (Reshape, Squeeze, Shape, ...) cost nothing beyond the partition's call.

Per-call overhead is *not* added per node: the solver adds ``DeviceSpec.call_overhead_s`` once
per partition.
"""

from __future__ import annotations

from typing import Any

from partitioner.cluster.types import DeviceSpec
from partitioner.costing.types import Cost, Supported, Unsupported
from partitioner.graph.types import NodeInfo

TENSOR_EFFICIENCY = 0.6
VECTOR_EFFICIENCY = 0.5
MEMORY_EFFICIENCY = 0.8

#: Ops whose FLOPs run on matrix/tensor units at the dtype's peak.
TENSOR_OPS = frozenset({
    "MatMul", "Gemm", "Conv", "ConvTranspose", "MatMulInteger", "ConvInteger", "QLinearMatMul",
    "QLinearConv", "Einsum", "Attention", "MultiHeadAttention", "FusedMatMul", "MatMulNBits",
    "GroupQueryAttention", "QAttention", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})

#: Ops that only change tensor metadata in ONNX Runtime / OpenVINO (no data movement).
VIEW_OPS = frozenset({
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant",
    "ConstantOfShape", "Dropout",
})

#: Op support per device class: op_type -> reason it cannot run there. Custom-domain ops are
#: checked separately (see :func:`check_support`). Like torch.fx's operator_support, the
#: capability is a table plus a single question.
UNSUPPORTED_BY_CLASS: dict[str, dict[str, str]] = {
    "cpu": {},
    "gpu": {},
    "npu": {
        "Softmax": "NPU class: no exp/reduction unit for Softmax (runs on the host CPU)",
        "LayerNormalization": "NPU class: LayerNormalization needs float reductions it lacks",
        "Erf": "NPU class: no transcendental unit for Erf (GELU)",
        "Gelu": "NPU class: no transcendental unit for Gelu",
        "If": "NPU class: no control flow (static graphs only)",
        "Loop": "NPU class: no control flow (static graphs only)",
        "Scan": "NPU class: no control flow (static graphs only)",
        "NonZero": "NPU class: data-dependent output shapes are not supported",
        "Unique": "NPU class: data-dependent output shapes are not supported",
    },
}

#: Runners that execute ONNX Runtime's custom domains (com.microsoft, ...).
CUSTOM_DOMAIN_RUNNERS = frozenset({"onnxruntime"})


def check_support(node: NodeInfo, device: DeviceSpec) -> Unsupported | None:
    """Why ``device`` cannot run ``node`` (class table, device list, custom domain), or None."""
    if node.op_type in device.unsupported_ops or node.qualified_op in device.unsupported_ops:
        return Unsupported(f"{device.id}: {node.qualified_op} is listed in unsupported_ops")
    if node.domain not in ("", "ai.onnx") and device.runner not in CUSTOM_DOMAIN_RUNNERS:
        return Unsupported(
            f"{device.id}: custom-domain op {node.qualified_op} runs only on ONNX Runtime "
            f"(runner is {device.runner})"
        )
    if node.domain not in ("", "ai.onnx") and device.device_class == "npu":
        return Unsupported(f"{device.id}: NPU class has no kernels for {node.qualified_op}")
    reason = UNSUPPORTED_BY_CLASS.get(device.device_class, {}).get(node.op_type)
    if reason is not None:
        return Unsupported(f"{device.id}: {reason}")
    return None


def node_dtype(model: Any, node: NodeInfo) -> str:
    """The dtype a node computes in: its first output's dtype (``float32`` if unknown)."""
    tensors = getattr(getattr(model, "facts", None), "tensors", None) or {}
    for name in node.outputs:
        info = tensors.get(name)
        if info is not None:
            dtype = str(info.dtype)
            if node.op_type in TENSOR_OPS and dtype in ("int32", "uint8", "int8"):
                return "int8"  # quantized matmul/conv accumulate in int32 from int8 inputs
            return dtype
    return "float32"


def workspace_bytes(node: NodeInfo, device: DeviceSpec) -> int:
    """Rough runner workspace: an im2col/GEMM scratch buffer the size of the output for
    convolutions and matmuls (oneDNN, cuDNN and cuBLAS all allocate one), else 0."""
    if node.op_type in TENSOR_OPS:
        return int(node.bytes_written)
    return 0


def roofline_latency(node: NodeInfo, device: DeviceSpec, dtype: str = "float32") -> float:
    """Roofline latency of ``node`` on ``device`` in seconds (no per-call overhead)."""
    if node.op_type in VIEW_OPS:
        return 0.0
    if node.op_type in TENSOR_OPS:
        compute_roof = device.flops_for(dtype) * TENSOR_EFFICIENCY
    else:
        compute_roof = device.peak_flops["float32"] * VECTOR_EFFICIENCY
    compute = node.flops / compute_roof
    memory = (node.bytes_read + node.bytes_written) / (device.memory_bandwidth * MEMORY_EFFICIENCY)
    return max(compute, memory)


class RooflineCostModel:
    """Costs from the device's spec sheet: peak FLOP/s per dtype and memory bandwidth."""

    name = "roofline"

    def estimate(self, model: Any, node: NodeInfo, device: DeviceSpec) -> Cost:
        """Roofline latency and workspace, or Unsupported with the table's reason."""
        unsupported = check_support(node, device)
        if unsupported is not None:
            return unsupported
        latency = roofline_latency(node, device, node_dtype(model, node))
        return Supported(latency, workspace_bytes(node, device), self.name)


def create(**options: Any) -> RooflineCostModel:
    """Registry entry point (``cost_models.roofline``); takes no options."""
    if options:
        from partitioner.errors import CostModelError

        raise CostModelError(f"roofline cost model takes no options, got {sorted(options)}")
    return RooflineCostModel()
