"""Pieces shared by every export format: encoder modules, parity inputs, texts, manifests.

The encoder modules wrap one open_clip tower: input as in :mod:`sgclip_ros.core.io_spec`
(float32 pixels / int64 tokens), output L2-normalised float32 embeddings. A reduced compute
precision casts inside the module, so artefact I/O never changes.
"""

from __future__ import annotations

import copy
import json
import platform
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from safetensors.torch import save_file
from torch import nn

from sgclip_ros.core import scoring
from sgclip_ros.core.backends.artefacts import FORMAT_VERSION, FORMATS, PROBE_FILE, TEXT_FILE
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.crops import object_crops, pair_crops
from sgclip_ros.core.frame_encoder import all_pairs
from sgclip_ros.core.io_spec import (
    COMPUTE_DTYPES,
    IMAGE,
    EncoderSpec,
    encoder_specs,
    io_spec,
    role_towers,
)
from sgclip_ros.core.model import SGClipModel, tokenize
from sgclip_ros.core.model_config import SGClipConfig
from sgclip_ros.core.model_store import write_manifest
from sgclip_ros.core.preprocess import preprocess_crops
from sgclip_ros.sim.shapes_scene import MIN_SCENE_FRAMES, clip_rng, plan_scene, render_frames

PROBE_TEXTS = ["person", "red cup", "on top of", "not open"]
PROBE_CROPS = 4


class ImageEncoder(nn.Module):
    """pixels [B,3,S,S] float32 -> normalised [B,D] float32."""

    def __init__(self, tower: nn.Module, compute: torch.dtype = torch.float32):
        super().__init__()
        self.tower, self.compute = tower, compute

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.tower.encode_image(pixels.to(self.compute), normalize=True).float()


class TextEncoder(nn.Module):
    """tokens [B,L] int64 -> normalised [B,D] float32."""

    def __init__(self, tower: nn.Module, compute: torch.dtype = torch.float32):
        super().__init__()
        self.tower, self.compute = tower, compute

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tower.encode_text(tokens, normalize=True).float()


def encoder_module(model: SGClipModel, spec: EncoderSpec, precision: str = "fp32") -> nn.Module:
    """The eval-mode module of ``spec`` (the tower is cast to the compute precision)."""
    compute = COMPUTE_DTYPES[precision]
    tower = model.towers[spec.tower]
    if compute != torch.float32:
        tower = copy.deepcopy(tower).to(compute)  # never cast the caller's model in place
    cls = ImageEncoder if spec.kind == IMAGE else TextEncoder
    return cls(tower, compute).eval()


def synthetic_frame(width: int = 320, height: int = 240) -> tuple[np.ndarray, torch.Tensor]:
    """A frame with three coloured shapes (one thin) and their boxes: real crop geometry."""
    img = np.full((height, width, 3), 230, np.uint8)
    cv2.rectangle(img, (20, 30), (119, 139), (200, 40, 40), -1)
    cv2.circle(img, (190, 120), 45, (40, 170, 60), -1)
    cv2.rectangle(img, (250, 20), (262, 210), (40, 60, 210), -1)
    boxes = torch.tensor([[20, 30, 120, 140], [145, 75, 236, 166], [250, 20, 263, 211]])
    return img, boxes


def parity_pixels(config: SGClipConfig) -> torch.Tensor:
    """Object and pair crops of the synthetic frame, preprocessed exactly as at runtime."""
    img, boxes = synthetic_frame()
    frame = torch.from_numpy(img)
    crops = object_crops(frame, boxes) + pair_crops(frame, boxes, None, all_pairs(len(boxes)))
    return preprocess_crops(crops, config.preprocess)


def shapes_world_pixels(config: SGClipConfig, clips: int = 4, seed: int = 0) -> torch.Tensor:
    """Object and pair crops of the first frame of ``clips`` ShapesWorld clips (the shipped
    model's domain, drawn by :mod:`sgclip_ros.sim.shapes_scene`), preprocessed as at runtime."""
    crops = []
    for index in range(clips):
        plan = plan_scene(clip_rng(seed, index), MIN_SCENE_FRAMES)
        frame = torch.from_numpy(render_frames(plan)[0])
        boxes = torch.tensor(plan.boxes(0))
        crops += object_crops(frame, boxes) + pair_crops(frame, boxes, None,
                                                          all_pairs(len(boxes)))
    return preprocess_crops(crops, config.preprocess)


def parity_tokens(config: SGClipConfig) -> torch.Tensor:
    return tokenize(config, PROBE_TEXTS)


def example_input(config: SGClipConfig, spec: EncoderSpec, batch: int = 2) -> torch.Tensor:
    """A batch-``batch`` example (>= 2 so no exporter freezes the batch axis to 1)."""
    if spec.kind == IMAGE:
        return parity_pixels(config)[:batch]
    return parity_tokens(config)[:batch]


@torch.inference_mode()
def reference_outputs(model: SGClipModel, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
    """Torch eager fp32 embeddings of ``x`` through ``spec``'s encoder."""
    return encoder_module(model, spec)(x).float()


def concept_sets(paths: list[str]) -> dict[str, tuple[str, object]]:
    """{set name (file stem): (source path, ConceptSet)} of the concept YAML files."""
    sets = {}
    for path in paths:
        name = Path(path).stem
        if name in sets:
            raise ValueError(f"two concept files named {name!r}: {sets[name][0]} and {path}")
        sets[name] = (str(path), load_concepts(path))
    return sets


ROLE_TEXTS = {"category": scoring.category_texts, "unary": scoring.unary_texts,
              "binary": scoring.binary_texts}


@torch.inference_mode()
def write_text_embeddings(model: SGClipModel, paths: list[str], out: Path) -> dict:
    """Torch eager embeddings of every role list of every concept file -> safetensors."""
    towers = role_towers(model.config)
    tensors, sets = {}, {}
    for name, (source, concepts) in concept_sets(paths).items():
        roles = {}
        for role, texts_of in ROLE_TEXTS.items():
            texts = texts_of(concepts)
            if not texts:
                continue
            tokens = tokenize(model.config, texts)
            emb = model.towers[towers[role]].encode_text(tokens, normalize=True).float()
            tensors[f"{name}/{role}/tokens"] = tokens.contiguous()
            tensors[f"{name}/{role}/embeddings"] = emb.contiguous()
            roles[role] = {"tower": towers[role], "count": len(texts)}
        sets[name] = {"concepts_id": concepts.concepts_id, "source": source, "roles": roles}
    save_file(tensors, str(out / TEXT_FILE), metadata={"sets": json.dumps(sets)})
    return {"file": TEXT_FILE, "sets": sets}


def write_probe(model: SGClipModel, out: Path) -> dict:
    """Inputs and fp32 torch outputs every backend re-checks itself against at load time."""
    config = model.config
    pixels, tokens = parity_pixels(config)[:PROBE_CROPS], parity_tokens(config)
    tensors = {"pixels": pixels.contiguous(), "tokens": tokens.contiguous()}
    for spec in encoder_specs(config):
        x = pixels if spec.kind == IMAGE else tokens
        tensors[spec.name] = reference_outputs(model, spec, x).contiguous()
    save_file(tensors, str(out / PROBE_FILE))
    return {"file": PROBE_FILE, "crops": len(pixels), "texts": PROBE_TEXTS}


def versions() -> dict:
    """Software that made the artefacts."""
    import open_clip

    out = {"torch": torch.__version__, "onnx": onnx.__version__,
           "open_clip": open_clip.__version__, "python": platform.python_version()}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if torch.version.cuda:
        out["torch_cuda"] = torch.version.cuda
    return out


def base_manifest(model: SGClipModel, fmt: str, model_id: str, precision: str) -> dict:
    """Manifest fields common to every artefact folder."""
    config = model.config
    scales = [float(t.logit_scale.detach().float().exp()) for t in model.towers]
    return {
        "format": FORMATS[fmt],
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "model_name": config.name,
        "config": config.to_dict(),
        "io_spec": io_spec(config),
        "precision": precision,
        "logit_scales": scales,
        "versions": versions(),
        "created_by": "training.export",
    }


def finish_folder(folder: Path, manifest: dict) -> dict:
    """Write the folder's manifest (sha256 of every file); returns it as written."""
    return json.loads(write_manifest(folder, manifest).read_text(encoding="utf-8"))
