"""The ``gpt-large`` zoo entry: the ``gpt`` graph built directly in ONNX, weights external.

No torch state is ever materialised: the graph is written with ``onnx.helper`` and every
parameter is drawn tensor by tensor (in bounded chunks) straight into ``<model>.data``, so a
model with more than 2 GiB of weights builds in seconds with a few hundred MiB of RAM.
Initializer names are the ``models.gpt.GPT`` state-dict keys; Linear weights are stored
transposed (``[in, out]``, as MatMul wants them): see ``torch_state_dict``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.export import OPSET, finalize

logger = logging.getLogger(__name__)

#: Offsets of external tensors are aligned to this many bytes (lets runtimes mmap them).
ALIGN = 4096
#: Standard deviation of every parameter (GPT-2's initialiser scale).
STD = 0.02
#: Size of the seeded N(0, 1) pool that tensors are cut from (drawing 600M+ fresh normals
#: would take most of a minute; windows of a 4M pool at random offsets take seconds).
POOL_ELEMENTS = 1 << 22
#: Suffixes of the Linear weights that are stored transposed relative to torch.
_LINEAR_WEIGHTS = (".qkv.weight", ".proj.weight", ".fc1.weight", ".fc2.weight", "head.weight")


class _ExternalWriter:
    """Streams random parameter tensors into one external data file, returning their protos."""

    def __init__(self, handle: BinaryIO, location: str, seed: int) -> None:
        self.handle = handle
        self.location = location
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.standard_normal(2 * POOL_ELEMENTS, dtype=np.float32)
        self.pool *= np.float32(STD)
        self.offset = 0
        self.total_bytes = 0

    def tensor(self, name: str, shape: tuple[int, ...], mean: float = 0.0) -> TensorProto:
        """Append ``N(mean, STD)`` float32 values of ``shape``; return their external proto.

        Values are windows of the seeded pool at random offsets, scaled and shifted.
        """
        pad = -self.offset % ALIGN
        if pad:
            self.handle.write(b"\0" * pad)
            self.offset += pad
        start, count = self.offset, math.prod(shape)
        remaining = count
        while remaining:
            n = min(remaining, POOL_ELEMENTS)
            start_in_pool = int(self.rng.integers(0, POOL_ELEMENTS))
            chunk = self.pool[start_in_pool : start_in_pool + n]
            if mean:
                chunk = chunk + np.float32(mean)
            self.handle.write(chunk.data)  # no copy for the (common) zero-mean case
            remaining -= n
        nbytes = count * 4
        self.offset += nbytes
        self.total_bytes += nbytes
        proto = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
        proto.data_location = TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", start), ("length", nbytes)):
            entry = proto.external_data.add()
            entry.key, entry.value = key, str(value)
        return proto


class _GraphBuilder:
    """Collects nodes, inline constants and external parameters of the GPT graph."""

    def __init__(self, writer: _ExternalWriter) -> None:
        self.w = writer
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self._n = 0

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> list[str]:
        self._n += 1
        outs = [f"{op_type.lower()}_{self._n}_{k}" for k in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outs, name=f"{op_type}_{self._n}", **attrs)
        )
        return outs

    def one(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        return self.op(op_type, inputs, **attrs)[0]

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def param(self, name: str, shape: tuple[int, ...], mean: float = 0.0) -> str:
        self.inits.append(self.w.tensor(name, shape, mean))
        return name

    def linear(self, x: str, prefix: str, d_in: int, d_out: int, bias: bool = True) -> str:
        y = self.one("MatMul", [x, self.param(f"{prefix}.weight", (d_in, d_out))])
        return self.one("Add", [y, self.param(f"{prefix}.bias", (d_out,))]) if bias else y

    def layer_norm(self, x: str, prefix: str, d: int) -> str:
        scale = self.param(f"{prefix}.weight", (d,), mean=1.0)
        return self.one(
            "LayerNormalization",
            [x, scale, self.param(f"{prefix}.bias", (d,))],
            axis=-1,
            epsilon=1e-5,
        )


def _attention(g: _GraphBuilder, x: str, p: str, dims: dict[str, int]) -> str:
    d = dims["d_model"]
    q, k, v = g.op("Split", [g.linear(x, f"{p}.qkv", d, 3 * d)], n_out=3, axis=-1, num_outputs=3)
    heads = "shape_bthd"
    q = g.one("Transpose", [g.one("Reshape", [q, heads])], perm=[0, 2, 1, 3])
    k = g.one("Transpose", [g.one("Reshape", [k, heads])], perm=[0, 2, 3, 1])
    v = g.one("Transpose", [g.one("Reshape", [v, heads])], perm=[0, 2, 1, 3])
    scores = g.one("Mul", [g.one("MatMul", [q, k]), "attn_scale"])
    probs = g.one("Softmax", [g.one("Add", [scores, "causal_mask"])], axis=-1)
    y = g.one("Transpose", [g.one("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    return g.linear(g.one("Reshape", [y, "shape_btd"]), f"{p}.proj", d, d)


def _feed_forward(g: _GraphBuilder, x: str, p: str, d: int) -> str:
    f = g.linear(x, f"{p}.fc1", d, 4 * d)
    erf = g.one("Erf", [g.one("Mul", [f, "inv_sqrt2"])])
    gelu = g.one("Mul", [g.one("Mul", [f, "half"]), g.one("Add", [erf, "one"])])
    return g.linear(gelu, f"{p}.fc2", 4 * d, d)


def build_graph(params: Mapping[str, Any], writer: _ExternalWriter) -> onnx.GraphProto:
    """Write every parameter through ``writer`` and return the GPT graph referencing them."""
    dims = {k: int(params[k]) for k in ("layers", "d_model", "heads", "seq_len", "vocab", "batch")}
    b, t, d, h, vocab = (
        dims["batch"],
        dims["seq_len"],
        dims["d_model"],
        dims["heads"],
        dims["vocab"],
    )
    g = _GraphBuilder(writer)
    g.const("shape_bthd", np.array([b, t, h, d // h], dtype=np.int64))
    g.const("shape_btd", np.array([b, t, d], dtype=np.int64))
    g.const("attn_scale", np.array(1.0 / math.sqrt(d // h), dtype=np.float32))
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
    g.const("causal_mask", mask)
    g.const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    g.const("half", np.array(0.5, dtype=np.float32))
    g.const("one", np.array(1.0, dtype=np.float32))

    tok = g.one("Gather", [g.param("tok_emb.weight", (vocab, d)), "input_ids"], axis=0)
    x = g.one("Add", [tok, g.param("pos_emb", (t, d))])
    for i in range(dims["layers"]):
        p = f"blocks.{i}"
        x = g.one("Add", [x, _attention(g, g.layer_norm(x, f"{p}.ln1", d), f"{p}.attn", dims)])
        x = g.one("Add", [x, _feed_forward(g, g.layer_norm(x, f"{p}.ln2", d), f"{p}.mlp", d)])
    x = g.layer_norm(x, "ln_f", d)
    g.nodes.append(
        helper.make_node(
            "MatMul", [x, g.param("head.weight", (d, vocab))], ["logits"], name="MatMul_head"
        )
    )
    return helper.make_graph(
        g.nodes,
        "gpt_large",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [b, t])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, t, vocab])],
        initializer=g.inits,
    )


def parameter_count(params: Mapping[str, Any]) -> int:
    """Number of float32 parameters the model with ``params`` has (4 bytes each)."""
    layers, d, t, vocab = (int(params[k]) for k in ("layers", "d_model", "seq_len", "vocab"))
    per_layer = 12 * d * d + 13 * d  # qkv, proj, fc1, fc2 with biases; two LayerNorms
    return layers * per_layer + 2 * vocab * d + t * d + 2 * d


def build(params: Mapping[str, Any], path: Path, metadata: Mapping[str, str]) -> None:
    """Zoo builder: write the model to ``path`` and its weights to ``path.with_suffix('.data')``.

    Args:
        params: ``layers``, ``d_model``, ``heads``, ``seq_len``, ``vocab``, ``batch``, ``seed``.
        path: Destination ``.onnx`` file; the data file sits beside it (relative location).
        metadata: ``metadata_props`` to attach.
    """
    data_path = path.with_suffix(".data")
    with open(data_path, "wb") as handle:
        writer = _ExternalWriter(handle, data_path.name, int(params["seed"]))
        graph = build_graph(params, writer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.producer_name = "hetpart.models.gpt_large"
    finalize(model, metadata)
    onnx.save_model(model, str(path))
    logger.info(
        "gpt-large: %d nodes, %.2f GiB of weights in %s",
        len(graph.node),
        writer.total_bytes / 2**30,
        data_path,
    )


def torch_state_dict(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Map a loaded gpt-large model's initializers to ``models.gpt.GPT`` state-dict arrays.

    Args:
        model: The model with its external data loaded (``onnx.load(path)``).

    Returns:
        ``{state_dict_key: array}``; Linear weights are transposed back to ``[out, in]``.
    """
    state: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        if init.name.startswith(("blocks.", "tok_emb", "pos_emb", "ln_f", "head")):
            array = numpy_helper.to_array(init)
            state[init.name] = array.T if init.name.endswith(_LINEAR_WEIGHTS) else array
    return state
