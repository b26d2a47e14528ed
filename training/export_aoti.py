"""AOTInductor export: ``torch.export`` + ``aoti_compile_and_package`` per encoder.

CPU packages are made anywhere; CUDA packages (optionally fp16/bf16 compute) only on a machine
with that GPU, since they hold kernels compiled for its architecture. Each package is loaded
back and checked against torch eager fp32 on real crops, at the parity batch and at batch 1.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from sgclip_ros.core.backends.aoti_backend import runtime_info
from sgclip_ros.core.backends.parity import Parity, compare
from sgclip_ros.core.io_spec import AOTI_MAX_BATCH, EncoderSpec, encoder_specs
from sgclip_ros.core.model import SGClipModel
from training.export_common import (
    base_manifest,
    encoder_module,
    example_input,
    finish_folder,
    reference_outputs,
    write_probe,
    write_text_embeddings,
)
from training.export_onnx import ExportError, parity_input


def compile_encoder(
    model: SGClipModel, spec: EncoderSpec, path: Path, device: str, precision: str,
    max_batch: int = AOTI_MAX_BATCH,
) -> None:
    """Export and compile ``spec``'s encoder into the package ``path`` (``.pt2``)."""
    module = encoder_module(model, spec, precision)
    x = example_input(model.config, spec).to(device)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        program = torch.export.export(module, (x,), dynamic_shapes={spec.input.name: {0: batch}})
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as exc:  # export/inductor raise many types; report which encoder failed
        message = f"{path}: AOTInductor export failed: {type(exc).__name__}: {exc}"
        raise ExportError(message) from exc
    if not path.is_file() or path.stat().st_size == 0:
        raise ExportError(f"{path}: AOTInductor wrote nothing")


@torch.inference_mode()
def aoti_parity(
    reference: SGClipModel, spec: EncoderSpec, path: Path, device: str, precision: str
) -> Parity:
    """The loaded package vs torch eager fp32 on the parity batch and its first row alone."""
    index = torch.device(device).index or 0
    kwargs = {} if device == "cpu" else {"device_index": index}
    package = torch._inductor.aoti_load_package(str(path), **kwargs)
    x = parity_input(reference, spec)
    expected = reference_outputs(reference, spec, x)
    full = package(x.to(device))
    single = package(x[:1].to(device))
    actual = torch.cat([full.float().cpu(), single.float().cpu()])
    return compare(torch.cat([expected, expected[:1]]), actual, precision)


def export_aoti(
    model: SGClipModel,
    folder: Path,
    model_id: str,
    device: str,
    precision: str,
    concept_files: list[str],
    max_batch: int = AOTI_MAX_BATCH,
) -> dict:
    """Fill ``folder`` with one package per encoder, texts, probe and manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    on_device = model if device == "cpu" else copy.deepcopy(model).to(device)
    parity, encoders = {}, {}
    for spec in encoder_specs(model.config):
        path = folder / spec.filename("pt2")
        compile_encoder(on_device, spec, path, device, precision, max_batch)
        result = aoti_parity(model, spec, path, device, precision)
        print(f"  aoti {spec.name} ({device}, {precision}): vs torch {result.describe()}",
              flush=True)
        if not result.ok:
            raise ExportError(f"{path}: AOTInductor disagrees with torch: {result.describe()}")
        parity[spec.name], encoders[spec.name] = result.to_dict(), path.name
    info = runtime_info(device)
    manifest = base_manifest(model, "aoti", model_id, precision)
    manifest.update(
        device=info["device"],
        torch_version=info["torch_version"],
        max_batch=max_batch,
        encoders=encoders,
        parity={"reference": "torch eager fp32", "runtime": f"aoti {device}", **parity},
        text_embeddings=write_text_embeddings(model, concept_files, folder),
        probe=write_probe(model, folder),
    )
    for key in ("compute_capability", "gpu_name"):
        if key in info:
            manifest[key] = info[key]
    return finish_folder(folder, manifest)
