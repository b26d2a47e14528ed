"""int8 ONNX Runtime graphs for CPU-only robots (``training.export --formats onnx-int8``).

Dynamic quantization (``onnxruntime.quantization.quantize_dynamic``): the weights of every
MatMul (and Gemm, where ONNX Runtime's dynamic quantizer supports it) with a constant weight
become int8 once, at export; activations are quantized to uint8 per call, from their own
range, so no calibration set is needed. Activation-by-activation products (attention scores)
stay float32 (``MatMulConstBOnly``), as do LayerNorm, softmax and the embedding tables.

The folder (``<model_dir>/onnx_int8/``) has the layout of ``onnx/``: one graph per encoder,
the precomputed text embeddings, the probe and a manifest with the sha256 of every file. Its
precision is ``int8``: the export accepts it, and the backend loads it, only while every
encoder's embeddings stay within cosine 0.99 of torch fp32 (``parity.MIN_COSINE``). The
load-time check matters more than for fp32: int8 kernels differ between CPUs (e.g. u8s8
products can saturate on x86 CPUs without VNNI), so an export checked on one machine is
re-checked on the robot.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import onnx

from sgclip_ros.core.io_spec import BATCH, encoder_specs
from sgclip_ros.core.model import SGClipModel
from training.export_common import base_manifest, finish_folder, write_probe, write_text_embeddings
from training.export_onnx import (
    ExportError,
    checked_graph,
    export_fp32_graphs,
    ort_parity,
)
from training.onnx_precision import set_metadata

QUANT_OP_TYPES = ("MatMul", "Gemm")
# Ops the dynamic quantizer writes (after ONNX Runtime's own fusions they may be fused further).
INT8_OPS = ("MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear", "ConvInteger")
SETTINGS = {
    "method": "dynamic",
    "op_types": list(QUANT_OP_TYPES),
    "weight_type": "QInt8",
    "activation_type": "QUInt8 (dynamic, per call)",
    "per_channel": False,
    "reduce_range": False,
    "matmul_const_b_only": True,
}


def quantize_file(source: Path, target: Path) -> dict:
    """Quantize one fp32 graph into ``target``; returns counts of float and int8 matmuls."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target), op_types_to_quantize=list(QUANT_OP_TYPES),
        per_channel=SETTINGS["per_channel"], reduce_range=SETTINGS["reduce_range"],
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": SETTINGS["matmul_const_b_only"]},
    )
    model = onnx.load(str(target))
    set_metadata(model, "int8")
    onnx.save(model, str(target))
    ops = Counter(node.op_type for node in model.graph.node)
    return {"int8_ops": {k: ops[k] for k in INT8_OPS if ops[k]},
            "float_matmuls": {k: ops[k] for k in QUANT_OP_TYPES if ops[k]}}


def export_onnx_int8(
    model: SGClipModel, folder: Path, model_id: str, opset: int, concept_files: list[str],
    source: Path | None = None,
) -> dict:
    """Fill ``folder`` with int8 graphs of every encoder, texts, probe and manifest.

    ``source``: a folder of fp32 graphs exported (and checked) in this run; without it they are
    exported into a temporary folder first. Returns the manifest.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sgclip-fp32-", dir=folder.parent) as scratch:
        if source is None:
            source = Path(scratch)
            export_fp32_graphs(model, source, opset)
        parity, encoders, ops = {}, {}, {}
        for spec in encoder_specs(model.config):
            path = folder / spec.filename("onnx")
            ops[spec.name] = quantize_file(source / spec.filename("onnx"), path)
            if not ops[spec.name]["int8_ops"]:
                raise ExportError(f"{path}: the quantizer left no int8 operator")
            checked_graph(path, spec)
            result = ort_parity(model, spec, path, "int8")
            print(f"  onnx-int8 {spec.name}: onnxruntime vs torch {result.describe()}", flush=True)
            if not result.ok:
                raise ExportError(f"{path}: int8 graph too far from torch: {result.describe()}")
            parity[spec.name], encoders[spec.name] = result.to_dict(), path.name
    manifest = base_manifest(model, "onnx-int8", model_id, "int8")
    manifest.update(
        opset=opset,
        device="cpu",
        dynamic_axes={BATCH: "axis 0 of every input and output"},
        encoders=encoders,
        quantization={**SETTINGS, "operators": ops},
        parity={"reference": "torch eager fp32", "runtime": "onnxruntime CPU", **parity},
        text_embeddings=write_text_embeddings(model, concept_files, folder),
        probe=write_probe(model, folder),
    )
    return finish_folder(folder, manifest)
