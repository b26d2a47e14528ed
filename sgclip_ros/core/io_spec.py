"""Tensor I/O of the exported encoders: one image and one text encoder per tower.

Export (ONNX, AOTInductor), the TensorRT engine build and every runtime backend read this
module, so names, shapes, dtypes and dynamic axes are defined once. Every encoder has one input
and one output; axis 0 is the dynamic batch. Inputs and outputs are float32 / int64 whatever the
compute precision (a reduced-precision engine casts inside the graph), and the output is
already L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgclip_ros.core.model_config import ROLES, SGClipConfig, tower_index

IO_SPEC_VERSION = 1
IMAGE, TEXT = "image", "text"
KINDS = (IMAGE, TEXT)
BATCH = "batch"
PRECISIONS = ("fp32", "fp16", "bf16")
# Largest batch an AOTInductor package accepts; engines record their own (TensorRT profiles).
AOTI_MAX_BATCH = 1024
TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64}
COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: name, dtype name and shape (``"batch"`` marks the dynamic axis)."""

    name: str
    dtype: str
    shape: tuple

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The shape with the batch axis set to ``batch``."""
        return tuple(batch if d == BATCH else d for d in self.shape)

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class EncoderSpec:
    """The image or text encoder of one tower."""

    tower: int
    kind: str
    input: TensorSpec
    output: TensorSpec

    @property
    def name(self) -> str:
        """Artefact stem, e.g. ``tower0_image``."""
        return f"tower{self.tower}_{self.kind}"

    def filename(self, ext: str) -> str:
        return f"{self.name}.{ext}"

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export`` dynamic_axes: batch on axis 0 of input and output."""
        return {self.input.name: {0: BATCH}, self.output.name: {0: BATCH}}

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` has this encoder's input shape (any batch)."""
        want = self.input.shape[1:]
        if x.dim() != len(self.input.shape) or tuple(x.shape[1:]) != want:
            shown = [BATCH, *want]
            raise ValueError(f"{self.name}: input must be {shown}, got {tuple(x.shape)}")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "tower": self.tower,
            "kind": self.kind,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in
                             self.dynamic_axes.items()},
        }


def encoder_spec(config: SGClipConfig, tower: int, kind: str) -> EncoderSpec:
    """The spec of ``kind`` ("image"/"text") of ``tower`` under ``config``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 <= tower < config.towers:
        raise ValueError(f"tower must be in 0..{config.towers - 1}, got {tower}")
    dim = int(config.clip["embed_dim"])
    output = TensorSpec("embeddings", "float32", (BATCH, dim))
    if kind == IMAGE:
        s = config.preprocess.image_size
        return EncoderSpec(tower, kind, TensorSpec("pixels", "float32", (BATCH, 3, s, s)), output)
    ctx = config.context_length
    return EncoderSpec(tower, kind, TensorSpec("tokens", "int64", (BATCH, ctx)), output)


def encoder_specs(config: SGClipConfig) -> list[EncoderSpec]:
    """Every encoder of the model: image then text, tower by tower."""
    return [encoder_spec(config, t, k) for t in range(config.towers) for k in KINDS]


def role_towers(config: SGClipConfig) -> dict[str, int]:
    """Which tower serves each role."""
    return {role: tower_index(role, config.towers) for role in ROLES}


def io_spec(config: SGClipConfig) -> dict:
    """JSON-ready description recorded in every export/engine manifest."""
    return {
        "version": IO_SPEC_VERSION,
        "batch_axis": 0,
        "embed_dim": int(config.clip["embed_dim"]),
        "image_size": config.preprocess.image_size,
        "context_length": config.context_length,
        "role_towers": role_towers(config),
        "encoders": [s.to_dict() for s in encoder_specs(config)],
    }


def io_spec_problems(recorded: dict, config: SGClipConfig) -> list[str]:
    """Differences between a manifest's recorded I/O spec and the one ``config`` implies."""
    if not isinstance(recorded, dict):
        return ["the manifest has no io_spec"]
    expected = io_spec(config)
    return [
        f"io_spec.{key}: manifest {recorded.get(key)!r}, expected {value!r}"
        for key, value in expected.items()
        if recorded.get(key) != value
    ]
