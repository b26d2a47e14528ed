"""Reduced-precision (fp16 / bf16) ONNX graphs from the exported fp32 ones.

fp16: ONNX Runtime's ``convert_float_to_float16`` (shipped with onnxruntime, no extra package)
turns weights and compute into float16 and keeps graph inputs/outputs float32, inserting the
casts inside the graph (``keep_io_types``). LayerNormalization, Softmax and ReduceL2 (the final
L2 normalisation, whose sum of squares can overflow float16) stay float32: each gets a cast
to float32 before and back after it.

bf16: the converter only writes float16, so its float16 graph is re-typed to bfloat16, with
every weight rounded from its original float32 value (not from the float16 copy, which was
clamped to the float16 range). Conv also stays float32 in bf16 graphs: ONNX Conv accepts
bfloat16 only from opset 22, and the export uses opset 17.

Both get ``sgclip.precision`` and ``sgclip.fp32_ops`` in the graph's ``metadata_props``, so
whoever is handed the ``.onnx`` alone (the TensorRT builder) can read the precision from it.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# Kept float32 (with casts around them) in every reduced-precision graph.
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceL2")
# Additionally float32 in bf16 graphs: ONNX Conv has no bfloat16 before opset 22.
BF16_FP32_OPS = ("Conv",)
ELEM_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
# Ops whose output type shows the compute precision of the graph's matrix products.
COMPUTE_OPS = ("MatMul", "Gemm")
META_PRECISION, META_FP32_OPS = "sgclip.precision", "sgclip.fp32_ops"


def fp32_ops_for(precision: str) -> tuple[str, ...]:
    """The op types left in float32 in a graph of ``precision``."""
    return FP32_OPS + (BF16_FP32_OPS if precision == "bf16" else ())


def convert_graph(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """A reduced-precision copy of the fp32 ``model`` (I/O stays float32); ``model`` unchanged."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    if precision not in ELEM_TYPES:
        raise ValueError(f"precision must be one of {tuple(ELEM_TYPES)}, got {precision!r}")
    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(fp32_ops_for(precision)))
    # The converter edits its argument in place: give it a copy, keep the fp32 values here.
    half = convert_float_to_float16(copy.deepcopy(model), keep_io_types=True, op_block_list=block)
    if precision == "bf16":
        retype_to_bfloat16(half, model)
    topological_sort(half.graph)  # the converter appends its casts at the end of the node list
    set_metadata(half, precision, fp32_ops_for(precision))
    return half


def set_metadata(model: onnx.ModelProto, precision: str, fp32_ops=()) -> None:
    """Record the precision (and the ops kept float32) in the graph's metadata_props."""
    entries = {META_PRECISION: precision, META_FP32_OPS: ",".join(fp32_ops)}
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


def graph_precision(model: onnx.ModelProto) -> str | None:
    """The precision recorded by :func:`set_metadata`, or None."""
    return next((p.value for p in model.metadata_props if p.key == META_PRECISION), None)


def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    rounded[nan] = 0x7FC0
    return rounded


def _bf16_tensor(reference: TensorProto | None, half: TensorProto) -> TensorProto:
    """A bfloat16 tensor named like ``half``, from the float32 ``reference`` when there is one."""
    source = reference if reference is not None else half
    values = numpy_helper.to_array(source).astype(np.float32)
    out = TensorProto(name=half.name, data_type=TensorProto.BFLOAT16, dims=list(half.dims))
    out.raw_data = to_bfloat16_bits(values.reshape(-1)).tobytes()
    return out


def _fp32_values(model: onnx.ModelProto) -> dict[str, TensorProto]:
    """float32 initializers and Constant values of the original graph, by tensor name."""
    values = {t.name: t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    values[node.output[0]] = attr.t
    return values


def retype_to_bfloat16(half: onnx.ModelProto, fp32: onnx.ModelProto) -> None:
    """Turn the float16 converter's graph into a bfloat16 one, in place."""
    originals = _fp32_values(fp32)
    graph = half.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            graph.initializer[i].CopyFrom(_bf16_tensor(originals.get(tensor.name), tensor))
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.BFLOAT16
    for node in graph.node:
        _retype_attributes(node, originals)


def _retype_attributes(node: onnx.NodeProto, originals: dict[str, TensorProto]) -> None:
    """float16 -> bfloat16 in a node's attributes: Cast targets and tensor values."""
    kinds = onnx.AttributeProto
    for attr in node.attribute:
        if attr.type == kinds.INT and node.op_type == "Cast" and attr.name == "to":
            if attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.BFLOAT16
        elif attr.type == kinds.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
            original = originals.get(node.output[0]) if node.op_type == "Constant" else None
            attr.t.CopyFrom(_bf16_tensor(original, attr.t))
        elif attr.type in (kinds.GRAPH, kinds.GRAPHS):
            raise ValueError(f"{node.op_type} {node.name!r}: subgraphs are not supported")


def _node_needs(node: onnx.NodeProto) -> list[str]:
    """Tensor names a node reads, including those its subgraphs read from the outer graph."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                names += _node_needs(inner)
    return names


def topological_sort(graph: onnx.GraphProto) -> None:
    """Order the nodes so each comes after the producers of its inputs (stable otherwise)."""
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    deps = [{producer[n] for n in _node_needs(node) if n in producer} - {i}
            for i, node in enumerate(nodes)]
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = sorted(i for i, w in enumerate(waiting) if w == 0)
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
        ready.sort()
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle; cannot order its nodes")
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named tensor (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in (*graph.input, *graph.output, *graph.value_info):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def weight_elements(model: onnx.ModelProto) -> dict[str, int]:
    """Number of floating-point weight elements per element-type name."""
    counts: Counter = Counter()
    for tensor in model.graph.initializer:
        name = TensorProto.DataType.Name(tensor.data_type).lower()
        if name in ("float", "float16", "bfloat16"):
            counts[name] += int(np.prod(tensor.dims, dtype=np.int64))
    return dict(counts)


def precision_problems(model: onnx.ModelProto, precision: str) -> list[str]:
    """Why ``model`` is not a ``precision`` graph as described above (empty: it is)."""
    want = ELEM_TYPES[precision]
    names = {want: TensorProto.DataType.Name(want), TensorProto.FLOAT: "FLOAT"}
    types = _elem_types(model)
    kept = set(fp32_ops_for(precision))
    problems = []
    for node in model.graph.node:
        expected = TensorProto.FLOAT if node.op_type in kept else want
        if node.op_type in COMPUTE_OPS or node.op_type in kept:
            got = types.get(node.output[0])
            if got != expected:
                problems.append(f"{node.op_type} {node.name!r} computes in "
                                f"{TensorProto.DataType.Name(got or 0)}, not {names[expected]}")
    weights = weight_elements(model)
    low = weights.get(TensorProto.DataType.Name(want).lower(), 0)
    if low <= weights.get("float", 0):
        problems.append(f"most weights are not {names[want]}: {weights}")
    if graph_precision(model) != precision:
        problems.append(f"metadata {META_PRECISION} is {graph_precision(model)!r}, "
                        f"not {precision!r}")
    return problems


def convert_file(source: Path, target: Path, precision: str) -> dict:
    """Convert one fp32 ``.onnx`` file; returns its weight element counts by type."""
    model = onnx.load(str(source))
    converted = convert_graph(model, precision)
    onnx.save(converted, str(target))
    return weight_elements(converted)
