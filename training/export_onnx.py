"""ONNX export of every encoder, with ``onnx.checker`` and an ONNX Runtime parity check.

The TorchScript exporter (``dynamo=False``) is used: it exports open_clip towers with a dynamic
batch axis and matches torch within a few 1e-6. Each graph's inputs/outputs are compared with
the I/O spec (names, element types, ``batch`` as axis 0), then ONNX Runtime (CPU provider) runs
real crops and probe texts at the full parity batch and at batch 1 against torch eager fp32.

Reduced precision (``precision="fp16"|"bf16"``, folder ``onnx_fp16/`` / ``onnx_bf16/``): the
fp32 graphs are converted by :mod:`training.onnx_precision` (I/O stays float32), checked the
same way plus their precision structure, and fp16 must stay within cosine 0.999 of torch fp32
in ONNX Runtime on the CPU. ONNX Runtime's CPU provider has no bfloat16 kernels: a bf16 graph
that it cannot run is written with its structure checked and its parity recorded as not
executed (it is for TensorRT, whose load-time self-check then runs the probe).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import torch

from sgclip_ros.core.backends.artefacts import subdir_for
from sgclip_ros.core.backends.parity import Parity, compare
from sgclip_ros.core.io_spec import BATCH, IMAGE, EncoderSpec, encoder_specs
from sgclip_ros.core.model import SGClipModel
from training.export_common import (
    base_manifest,
    encoder_module,
    example_input,
    finish_folder,
    parity_pixels,
    parity_tokens,
    reference_outputs,
    write_probe,
    write_text_embeddings,
)
from training.onnx_precision import (
    convert_file,
    fp32_ops_for,
    precision_problems,
    set_metadata,
)

DEFAULT_OPSET = 17
# Export acceptance of fp16 graphs run by ONNX Runtime on the CPU (stricter than the load-time
# bound of fp16 engines, parity.MIN_COSINE: the CPU provider accumulates in fp32).
FP16_EXPORT_MIN_COS = 0.999
_ELEM = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}


class ExportError(RuntimeError):
    """An export step failed; the message names the artefact and the check."""


def export_encoder(model: SGClipModel, spec: EncoderSpec, path: Path, opset: int) -> None:
    """Write ``spec``'s encoder as ONNX with a dynamic batch axis and check it."""
    module = encoder_module(model, spec)
    x = example_input(model.config, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation chatter
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=[spec.input.name], output_names=[spec.output.name],
            dynamic_axes=spec.dynamic_axes, do_constant_folding=True,
        )
    if not path.is_file() or path.stat().st_size == 0:
        raise ExportError(f"{path}: the exporter wrote nothing")
    pin_static_dims(path, spec)
    checked_graph(path, spec)


def checked_graph(path: Path, spec: EncoderSpec, precision: str = "fp32") -> None:
    """ExportError unless ``path`` passes onnx.checker (full shape inference), follows the I/O
    spec and, for fp16/bf16, has that precision's structure."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker failed: {exc}") from exc
    graph_model = onnx.load(str(path), load_external_data=False)
    problems = graph_io_problems(graph_model, spec)
    if precision in ("fp16", "bf16"):
        problems += precision_problems(graph_model, precision)
    if problems:
        raise ExportError(f"{path}: " + "; ".join(problems))


def pin_static_dims(path: Path, spec: EncoderSpec) -> None:
    """Write the spec's fixed sizes into the graph's I/O where the exporter left a symbol, and
    the precision into its metadata.

    (The TorchScript exporter names the embedding width symbolically after normalisation;
    ``onnx.checker`` with full_check then verifies the pinned size by shape inference.)
    """
    graph_model = onnx.load(str(path))
    for values, tensor in ((graph_model.graph.input, spec.input),
                           (graph_model.graph.output, spec.output)):
        for value in values:
            if value.name != tensor.name:
                continue
            for dim, want in zip(value.type.tensor_type.shape.dim, tensor.shape):
                if want != BATCH and dim.dim_param:
                    dim.dim_value = int(want)  # clears dim_param (a oneof)
    set_metadata(graph_model, "fp32")  # the precision, readable from the graph alone
    onnx.save(graph_model, str(path))


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def graph_io_problems(graph_model, spec: EncoderSpec) -> list[str]:
    """Differences between an ONNX graph's inputs/outputs and the I/O spec."""
    graph = graph_model.graph
    problems = []
    for values, tensor in ((graph.input, spec.input), (graph.output, spec.output)):
        if [v.name for v in values] != [tensor.name]:
            problems.append(f"expected tensor {tensor.name}, graph has {[v.name for v in values]}")
            continue
        value = values[0]
        if value.type.tensor_type.elem_type != _ELEM[tensor.dtype]:
            problems.append(f"{tensor.name}: element type is not {tensor.dtype}")
        if _dims(value) != list(tensor.shape):
            problems.append(f"{tensor.name}: shape {_dims(value)} != spec {list(tensor.shape)}")
    return problems


def parity_input(model: SGClipModel, spec: EncoderSpec) -> torch.Tensor:
    """Real crops (image encoders) or probe texts (text encoders)."""
    return parity_pixels(model.config) if spec.kind == IMAGE else parity_tokens(model.config)


def ort_parity(model: SGClipModel, spec: EncoderSpec, path: Path, precision: str = "fp32",
               min_cos: float | None = None) -> Parity:
    """ONNX Runtime (CPU) vs torch eager fp32 on the parity batch and on its first row alone."""
    import onnxruntime as ort

    from sgclip_ros.core.backends.onnxruntime_backend import disabled_optimizers

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                   disabled_optimizers=disabled_optimizers(precision))
    x = parity_input(model, spec)
    expected = reference_outputs(model, spec, x)
    full = session.run([spec.output.name], {spec.input.name: x.numpy()})[0]
    single = session.run([spec.output.name], {spec.input.name: x[:1].numpy()})[0]
    actual = torch.cat([torch.from_numpy(full), torch.from_numpy(single)])
    return compare(torch.cat([expected, expected[:1]]), actual, precision, min_cos)


def export_fp32_graphs(model: SGClipModel, folder: Path, opset: int) -> dict[str, Parity]:
    """Export and check every encoder as fp32 ONNX into ``folder``; {encoder: parity}."""
    folder.mkdir(parents=True, exist_ok=True)
    parity = {}
    for spec in encoder_specs(model.config):
        path = folder / spec.filename("onnx")
        export_encoder(model, spec, path, opset)
        result = ort_parity(model, spec, path)
        print(f"  onnx {spec.name}: onnxruntime vs torch {result.describe()}", flush=True)
        if not result.ok:
            raise ExportError(f"{path}: onnxruntime disagrees with torch: {result.describe()}")
        parity[spec.name] = result
    return parity


def is_not_implemented(exc: Exception) -> bool:
    """ONNX Runtime's answer for a graph with types its provider has no kernel for."""
    return type(exc).__name__ == "NotImplemented" or "NOT_IMPLEMENTED" in str(exc)


def reduced_parity(model: SGClipModel, spec: EncoderSpec, path: Path, precision: str) -> dict:
    """Parity of a fp16/bf16 graph in ONNX Runtime (CPU); ExportError if too far from torch.

    A bf16 graph that the CPU provider cannot run (no bfloat16 kernels) is not an error: the
    entry says it was not executed, and why.
    """
    bound = FP16_EXPORT_MIN_COS if precision == "fp16" else None
    try:
        result = ort_parity(model, spec, path, precision, bound)
    except Exception as exc:  # onnxruntime raises its own exception types
        if precision == "bf16" and is_not_implemented(exc):
            reason = str(exc).splitlines()[0][:300]
            print(f"  onnx-{precision} {spec.name}: not run by onnxruntime CPU ({reason})")
            return {"executed": False, "precision": precision,
                    "reason": f"onnxruntime CPU cannot run bf16: {reason}"}
        raise ExportError(f"{path}: onnxruntime cannot run the {precision} graph: {exc}") from exc
    print(f"  onnx-{precision} {spec.name}: onnxruntime vs torch {result.describe()}", flush=True)
    if not result.ok:
        raise ExportError(f"{path}: {precision} graph too far from torch: {result.describe()}")
    return {"executed": True, **result.to_dict()}


def export_onnx(
    model: SGClipModel, folder: Path, model_id: str, opset: int, concept_files: list[str],
    precision: str = "fp32", source: Path | None = None,
) -> dict:
    """Fill ``folder`` with every encoder, texts, probe and manifest; returns the manifest.

    fp16/bf16 graphs are converted from the fp32 graphs in ``source`` (exported and checked
    in this run) or, without it, from fp32 graphs exported into a temporary folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = base_manifest(model, "onnx", model_id, precision)
    if precision == "fp32":
        parity = {n: r.to_dict() for n, r in export_fp32_graphs(model, folder, opset).items()}
        manifest.update(device="any")
    else:
        parity, weights = convert_graphs(model, folder, opset, precision, source)
        manifest.update(device="tensorrt" if precision == "bf16" else "any",
                        fp32_ops=list(fp32_ops_for(precision)), weight_elements=weights,
                        converted_from="fp32 ONNX (training.onnx_precision)")
    encoders = {s.name: s.filename("onnx") for s in encoder_specs(model.config)}
    manifest.update(
        opset=opset,
        dynamic_axes={BATCH: "axis 0 of every input and output"},
        encoders=encoders,
        parity={"reference": "torch eager fp32", "runtime": "onnxruntime CPU", **parity},
        text_embeddings=write_text_embeddings(model, concept_files, folder),
        probe=write_probe(model, folder),
    )
    return finish_folder(folder, manifest)


def convert_graphs(model: SGClipModel, folder: Path, opset: int, precision: str,
                   source: Path | None) -> tuple[dict, dict]:
    """fp16/bf16 graphs of every encoder in ``folder``: ({encoder: parity}, {encoder: weights})."""
    parity, weights = {}, {}
    with tempfile.TemporaryDirectory(prefix=".sgclip-fp32-", dir=folder.parent) as scratch:
        if source is None:
            source = Path(scratch)
            export_fp32_graphs(model, source, opset)
        for spec in encoder_specs(model.config):
            path = folder / spec.filename("onnx")
            try:
                weights[spec.name] = convert_file(source / path.name, path, precision)
            except (ValueError, onnx.checker.ValidationError) as exc:
                raise ExportError(f"{path}: {precision} conversion failed: {exc}") from exc
            checked_graph(path, spec, precision)
            parity[spec.name] = reduced_parity(model, spec, path, precision)
    return parity, weights


def onnx_subdir(precision: str) -> str:
    """The folder of ONNX graphs of ``precision`` (``onnx``, ``onnx_fp16``, ``onnx_bf16``)."""
    return subdir_for("onnx", precision=precision)
