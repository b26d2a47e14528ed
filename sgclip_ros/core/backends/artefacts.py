"""Exported/compiled artefact folders of a model directory, verified before anything loads.

Layout (each folder has its own ``manifest.json`` with the sha256 of every file)::

    <model_dir>/model.safetensors, config.json, manifest.json   (the weights)
    <model_dir>/onnx/        tower{t}_{image,text}.onnx          (training.export)
    <model_dir>/onnx_fp16/, onnx_bf16/   the same, reduced precision (export --precision)
    <model_dir>/onnx_int8/   tower{t}_{image,text}.onnx, int8    (export --formats onnx-int8)
    <model_dir>/aoti_cpu/    tower{t}_{image,text}.pt2           (training.export, CPU)
    <model_dir>/aoti_cuda/   tower{t}_{image,text}.pt2           (training.export on a GPU)
    <model_dir>/tensorrt/    tower{t}_{image,text}.plan + engine.json  (training.build_engine)

Integrity problems (outside the root, escaping links, sha256 mismatch, truncated or empty files)
raise ModelFileError: the deployment is broken or tampered with and must be fixed. A folder that
is absent, stale (exported from other weights or another config) or built for another runtime
raises BackendUnavailable: the selector falls back and reports why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sgclip_ros.core.io_spec import PRECISIONS, EncoderSpec, encoder_specs, io_spec_problems
from sgclip_ros.core.model_config import SGClipConfig
from sgclip_ros.core.model_store import resolve_in_root, verify_model_dir

FORMAT_VERSION = 1
FORMATS = {"onnx": "sgclip-onnx", "onnx-int8": "sgclip-onnx-int8", "aoti": "sgclip-aoti",
           "tensorrt": "sgclip-tensorrt"}
EXTENSIONS = {"onnx": "onnx", "onnx-int8": "onnx", "aoti": "pt2", "tensorrt": "plan"}
# Precisions a folder of each format may declare (default: io_spec.PRECISIONS).
FORMAT_PRECISIONS = {"onnx-int8": ("int8",)}
TEXT_FILE = "text_embeddings.safetensors"
PROBE_FILE = "probe.safetensors"
ENGINE_METADATA = "engine.json"
HOW_TO_MAKE = {
    "onnx": "python -m training.export --formats onnx",
    "onnx-int8": "python -m training.export --formats onnx-int8",
    "aoti": "python -m training.export --formats aoti (on a machine with the target device)",
    "tensorrt": "python -m training.build_engine on the robot",
}


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, device, artefacts); fall back."""


def subdir_for(fmt: str, device_type: str = "cpu", precision: str = "fp32") -> str:
    """The folder name of an artefact format inside a model directory.

    ONNX graphs of a reduced precision live next to the fp32 ones (``onnx_fp16``,
    ``onnx_bf16``): the ``onnxruntime`` backend always finds fp32 graphs in ``onnx/``.
    """
    if fmt == "aoti":
        return f"aoti_{'cuda' if device_type == 'cuda' else 'cpu'}"
    if fmt == "onnx" and precision != "fp32":
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        return f"onnx_{precision}"
    if fmt not in FORMATS:
        raise ValueError(f"unknown artefact format {fmt!r}")
    return fmt.replace("-", "_")


@dataclass
class Artefacts:
    """A verified artefact folder and what its manifest says."""

    fmt: str
    directory: Path
    manifest: dict
    config: SGClipConfig
    model_id: str

    @property
    def precision(self) -> str:
        return self.manifest["precision"]

    def path(self, spec: EncoderSpec) -> Path:
        return self.directory / spec.filename(EXTENSIONS[self.fmt])

    def has(self, name: str) -> bool:
        return name in self.manifest.get("files", {})


def manifest_problems(manifest: dict, fmt: str, config: SGClipConfig, model_id: str) -> list[str]:
    """Why this manifest does not describe ``fmt`` artefacts of these weights (empty: fine)."""
    problems = []
    if manifest.get("format") != FORMATS[fmt]:
        problems.append(f"format is {manifest.get('format')!r}, expected {FORMATS[fmt]!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(
            f"format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}"
        )
    if manifest.get("model_id") != model_id:
        problems.append(
            f"stale: exported from weights {manifest.get('model_id')!r} but the model directory "
            f"holds {model_id!r}; re-export"
        )
    if manifest.get("config") != config.to_dict():
        problems.append("stale: exported with a different model config; re-export")
    allowed = FORMAT_PRECISIONS.get(fmt, PRECISIONS)
    if manifest.get("precision") not in allowed:
        problems.append(f"precision {manifest.get('precision')!r} not in {allowed}")
    scales = manifest.get("logit_scales")
    if not isinstance(scales, list) or len(scales) != config.towers:
        problems.append(f"logit_scales must list {config.towers} values")
    problems += io_spec_problems(manifest.get("io_spec"), config)
    return problems


def load_artefacts(
    model_root: str | Path,
    model_dir: str | Path,
    subdir: str,
    fmt: str,
    config: SGClipConfig,
    model_id: str,
) -> Artefacts:
    """Verify ``<model_dir>/<subdir>`` (sha256 of every file) and check its manifest."""
    relative = Path(model_dir) / subdir
    directory = resolve_in_root(model_root, relative)
    if not directory.is_dir():
        raise BackendUnavailable(
            f"no {subdir}/ folder in {resolve_in_root(model_root, model_dir)} "
            f"(make it with: {HOW_TO_MAKE[fmt]})"
        )
    required = [spec.filename(EXTENSIONS[fmt]) for spec in encoder_specs(config)]
    manifest = verify_model_dir(model_root, relative, required=required)
    problems = manifest_problems(manifest, fmt, config, model_id)
    if problems:
        raise BackendUnavailable(f"{directory}: " + "; ".join(problems))
    return Artefacts(fmt, directory, manifest, config, model_id)
