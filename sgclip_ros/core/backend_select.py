"""Choose and load an inference backend for a verified model directory.

``backend: auto|tensorrt|onnxruntime|onnxruntime-int8|aoti|torch``. Fallback order (first
that loads wins)::

    auto, tensorrt   : tensorrt -> onnxruntime -> aoti -> torch
    onnxruntime      : onnxruntime -> aoti -> torch
    onnxruntime-int8 : onnxruntime-int8 -> onnxruntime -> aoti -> torch
    aoti             : aoti -> onnxruntime -> torch
    torch            : torch

``auto`` never picks int8: its embeddings are only within cosine 0.99 of the trained model's
(fp32 backends: 1e-3 max abs), which moves scores near a threshold, so trading accuracy for
CPU speed is the user's explicit choice. int8 always runs its load-time self-check.

Every candidate runs on the resolved device (``auto``: cuda when available, else cpu): on a GPU,
onnxruntime needs its CUDA provider and aoti needs ``aoti_cuda/``; a CPU-only fallback never
happens behind the user's back. Each skipped candidate appends one human-readable reason to
``BackendChoice.fallbacks`` (the node logs each as a WARN and publishes them in diagnostics).

Integrity problems are never a fallback: a model or artefact path outside the model root, a link
escaping it, a sha256 mismatch, a truncated or empty file raise ModelFileError naming the path.
Compiled backends check themselves after loading against embeddings recorded at export
(``BackendOptions.self_check``); a disagreement is a fallback with the figures in the reason.
``UNTRAINED_TINY`` builds the tiny test model with random weights (no files), reported as
untrained.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sgclip_ros.core.backend import EncoderBackend, TorchBackend
from sgclip_ros.core.backends.artefacts import BackendUnavailable, load_artefacts, subdir_for
from sgclip_ros.core.model import CONFIG_FILE, WEIGHTS_FILE, build_model, load_model
from sgclip_ros.core.model_config import SGClipConfig, load_model_config
from sgclip_ros.core.model_store import (
    ModelFileError,
    model_id,
    resolve_in_root,
    verify_model_dir,
)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "onnxruntime-int8", "aoti", "torch")
UNTRAINED_TINY = "untrained-tiny"
FALLBACK_ORDER = {
    "auto": ("tensorrt", "onnxruntime", "aoti", "torch"),
    "tensorrt": ("tensorrt", "onnxruntime", "aoti", "torch"),
    "onnxruntime": ("onnxruntime", "aoti", "torch"),
    "onnxruntime-int8": ("onnxruntime-int8", "onnxruntime", "aoti", "torch"),
    "aoti": ("aoti", "onnxruntime", "torch"),
    "torch": ("torch",),
}


@dataclass(frozen=True)
class BackendOptions:
    """Loading options: ONNX Runtime intra-op threads (0: its default), load-time self-check."""

    intra_op_threads: int = 0
    self_check: bool = True


@dataclass
class BackendChoice:
    """The loaded backend, what was asked for, and why anything else was skipped."""

    backend: EncoderBackend
    requested: str
    fallbacks: list[str] = field(default_factory=list)
    untrained: bool = False


@dataclass(frozen=True)
class _Context:
    root: str
    model_dir: str
    directory: Path
    config: SGClipConfig
    model_id: str
    device: str
    options: BackendOptions


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _read_config(directory: Path) -> SGClipConfig:
    path = directory / CONFIG_FILE
    try:
        return SGClipConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:  # includes JSONDecodeError
        raise ModelFileError(f"{path}: invalid model config ({exc})") from exc


def _checked(backend, ctx: _Context):
    if ctx.options.self_check:
        backend.self_check()
    return backend


def _load_tensorrt(ctx: _Context) -> EncoderBackend:
    if not ctx.device.startswith("cuda"):
        raise BackendUnavailable(f"needs a CUDA device, the device is {ctx.device}")
    from sgclip_ros.core.backends.tensorrt_backend import TensorRTBackend

    art = load_artefacts(ctx.root, ctx.model_dir, "tensorrt", "tensorrt", ctx.config, ctx.model_id)
    return _checked(TensorRTBackend(art, ctx.device), ctx)


def _load_onnxruntime(ctx: _Context) -> EncoderBackend:
    from sgclip_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    art = load_artefacts(ctx.root, ctx.model_dir, "onnx", "onnx", ctx.config, ctx.model_id)
    threads = ctx.options.intra_op_threads
    return _checked(OnnxRuntimeBackend(art, ctx.device, intra_op_threads=threads), ctx)


def _load_onnxruntime_int8(ctx: _Context) -> EncoderBackend:
    from sgclip_ros.core.backends.onnxruntime_backend import OnnxRuntimeInt8Backend

    if ctx.device.startswith("cuda"):  # before reading any file: int8 is for the CPU
        raise BackendUnavailable(f"int8 graphs are for the CPU, the device is {ctx.device}")
    subdir = subdir_for("onnx-int8")
    art = load_artefacts(ctx.root, ctx.model_dir, subdir, "onnx-int8", ctx.config, ctx.model_id)
    backend = OnnxRuntimeInt8Backend(art, ctx.device, intra_op_threads=ctx.options.intra_op_threads)
    backend.self_check()  # always: int8 kernels differ between CPUs
    return backend


def _load_aoti(ctx: _Context) -> EncoderBackend:
    from sgclip_ros.core.backends.aoti_backend import AotiBackend

    subdir = subdir_for("aoti", "cuda" if ctx.device.startswith("cuda") else "cpu")
    art = load_artefacts(ctx.root, ctx.model_dir, subdir, "aoti", ctx.config, ctx.model_id)
    return _checked(AotiBackend(art, ctx.device), ctx)


def _load_torch(ctx: _Context) -> EncoderBackend:
    return TorchBackend(load_model(ctx.directory, device=ctx.device), ctx.model_id, ctx.device)


LOADERS: dict[str, Callable[[_Context], EncoderBackend]] = {
    "tensorrt": _load_tensorrt,
    "onnxruntime": _load_onnxruntime,
    "onnxruntime-int8": _load_onnxruntime_int8,
    "aoti": _load_aoti,
    "torch": _load_torch,
}


def _try(name: str, ctx: _Context) -> tuple[EncoderBackend | None, str]:
    """(backend, "") or (None, reason). ModelFileError always propagates."""
    try:
        return LOADERS[name](ctx), ""
    except ModelFileError:
        raise
    except BackendUnavailable as exc:
        return None, f"{name} unavailable: {exc}"
    except Exception as exc:  # a compiled runtime failing in its own way: still a fallback
        if name == "torch":
            raise
        return None, f"{name} failed to load: {type(exc).__name__}: {exc}"


def load_backend(
    preference: str,
    model_root: str,
    model_dir: str,
    device: str = "auto",
    options: BackendOptions | None = None,
) -> BackendChoice:
    """Load ``model_dir`` (relative to ``model_root``) with the preferred backend.

    Raises ModelFileError for unsafe or corrupt model files and ValueError for bad arguments.
    """
    if preference not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {preference!r}")
    torch_device = _torch_device(device)
    if model_dir == UNTRAINED_TINY:
        model = build_model(load_model_config("sgclip-tiny"), seed=0)
        backend = TorchBackend(model, UNTRAINED_TINY, torch_device)
        return BackendChoice(backend, preference, untrained=True)
    manifest = verify_model_dir(model_root, model_dir, required=[WEIGHTS_FILE, CONFIG_FILE])
    directory = resolve_in_root(model_root, model_dir)
    ctx = _Context(str(model_root), str(model_dir), directory, _read_config(directory),
                   model_id(manifest), torch_device, options or BackendOptions())
    fallbacks: list[str] = []
    for name in FALLBACK_ORDER[preference]:
        backend, reason = _try(name, ctx)
        if backend is not None:
            return BackendChoice(backend, preference, fallbacks)
        fallbacks.append(reason)
    raise AssertionError("torch is always the last candidate")  # pragma: no cover
