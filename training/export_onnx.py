"""ONNX export of every encoder, with ``onnx.checker`` and an ONNX Runtime parity check.

The TorchScript exporter (``dynamo=False``) is used: it exports open_clip towers with a dynamic
batch axis and matches torch within a few 1e-6. Each graph's inputs/outputs are compared with
the I/O spec (names, element types, ``batch`` as axis 0), then ONNX Runtime (CPU provider) runs
real crops and probe texts at the full parity batch and at batch 1 against torch eager fp32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

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

DEFAULT_OPSET = 17
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
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: onnx.checker failed: {exc}") from exc
    problems = graph_io_problems(onnx.load(str(path), load_external_data=False), spec)
    if problems:
        raise ExportError(f"{path}: " + "; ".join(problems))


def pin_static_dims(path: Path, spec: EncoderSpec) -> None:
    """Write the spec's fixed sizes into the graph's I/O where the exporter left a symbol.

    (The TorchScript exporter names the embedding width symbolically after normalisation;
    ``onnx.checker`` with full_check then verifies the pinned size by shape inference.)
    """
    graph_model = onnx.load(str(path))
    changed = False
    for values, tensor in ((graph_model.graph.input, spec.input),
                           (graph_model.graph.output, spec.output)):
        for value in values:
            if value.name != tensor.name:
                continue
            for dim, want in zip(value.type.tensor_type.shape.dim, tensor.shape):
                if want != BATCH and dim.dim_param:
                    dim.dim_value = int(want)  # clears dim_param (a oneof)
                    changed = True
    if changed:
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


def ort_parity(model: SGClipModel, spec: EncoderSpec, path: Path) -> Parity:
    """ONNX Runtime (CPU) vs torch eager on the parity batch and on its first row alone."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = parity_input(model, spec)
    expected = reference_outputs(model, spec, x)
    full = session.run([spec.output.name], {spec.input.name: x.numpy()})[0]
    single = session.run([spec.output.name], {spec.input.name: x[:1].numpy()})[0]
    actual = torch.cat([torch.from_numpy(full), torch.from_numpy(single)])
    return compare(torch.cat([expected, expected[:1]]), actual, "fp32")


def export_onnx(
    model: SGClipModel, folder: Path, model_id: str, opset: int, concept_files: list[str]
) -> dict:
    """Fill ``folder`` with every encoder, texts, probe and manifest; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    parity, encoders = {}, {}
    for spec in encoder_specs(model.config):
        path = folder / spec.filename("onnx")
        export_encoder(model, spec, path, opset)
        result = ort_parity(model, spec, path)
        print(f"  onnx {spec.name}: onnxruntime vs torch {result.describe()}", flush=True)
        if not result.ok:
            raise ExportError(f"{path}: onnxruntime disagrees with torch: {result.describe()}")
        parity[spec.name], encoders[spec.name] = result.to_dict(), path.name
    manifest = base_manifest(model, "onnx", model_id, "fp32")
    manifest.update(
        opset=opset,
        device="any",
        dynamic_axes={BATCH: "axis 0 of every input and output"},
        encoders=encoders,
        parity={"reference": "torch eager fp32", "runtime": "onnxruntime CPU", **parity},
        text_embeddings=write_text_embeddings(model, concept_files, folder),
        probe=write_probe(model, folder),
    )
    return finish_folder(folder, manifest)
