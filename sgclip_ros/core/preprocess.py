"""Crop preprocessing with the reference's ``CLIPProcessor`` semantics, in torch.

The reference (transformers 4.46, slow ``CLIPImageProcessor``) resizes the SHORTEST side to S with
PIL bicubic (new long side ``int(S * long / short)``), center-crops S x S
(``top = (h - S) // 2``), scales by 1/255 and normalises. This module reproduces PIL's 8-bit
resampler exactly: same filter coefficients, same 22-bit fixed-point weights, horizontal pass then
vertical pass with 8-bit rounding in between. Only the output rows/columns that survive the center
crop are computed, so thin crops (1 x 500 px) cost no more than square ones.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from sgclip_ros.core.model_config import PreprocessConfig

_PRECISION_BITS = 32 - 8 - 2  # PIL Resample.c: fixed-point weight precision for 8-bit images
_SUPPORT = {"bicubic": 2.0, "bilinear": 1.0}


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5  # PIL's bicubic (Keys) parameter
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_FILTERS = {"bicubic": _bicubic, "bilinear": _triangle}


@lru_cache(maxsize=1024)
def resample_weights(
    in_size: int, out_size: int, start: int, count: int, interpolation: str = "bicubic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's taps for outputs ``start .. start+count-1`` of an ``in_size -> out_size`` resize.

    Returns (index [count, K] int64, weight [count, K] int32 fixed-point); padding taps have
    weight 0 and a valid index.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT[interpolation] * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(start, start + count, dtype=np.float64) + 0.5) * scale
    # PIL rounds with a C (int) cast, which truncates toward zero, then clamps.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize, dtype=np.int64)
    valid = taps[None, :] < xmax[:, None]
    ss = 1.0 / filterscale  # multiply by the reciprocal like PIL, for identical rounding
    w = _FILTERS[interpolation]((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * ss)
    w = np.where(valid, w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    fixed = w * (1 << _PRECISION_BITS)
    fixed = np.where(fixed < 0, np.trunc(fixed - 0.5), np.trunc(fixed + 0.5)).astype(np.int32)
    index = np.minimum(xmin[:, None] + taps[None, :], in_size - 1)
    return torch.from_numpy(index), torch.from_numpy(fixed)


def _dense(index: torch.Tensor, weight: torch.Tensor, in_size: int) -> torch.Tensor:
    """The taps as a dense float64 [in, out] matrix (padding taps add weight 0)."""
    dense = torch.zeros(in_size, index.shape[0], dtype=torch.float64)
    cols = torch.arange(index.shape[0]).unsqueeze(1).expand_as(index)
    dense.index_put_((index, cols), weight.to(torch.float64), accumulate=True)
    return dense


def _pass(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One 8-bit PIL pass along the last axis: int [..., in] -> int32 in 0..255 [..., out].

    A float64 matrix product is exact here: every term is an integer (pixel <= 255 times a
    22-bit weight) and their sum stays far below 2^53, so this equals PIL's integer loop
    while running as one BLAS call instead of one gather per tap.
    """
    acc = x.to(torch.float64) @ _dense(index, weight, x.shape[-1])
    acc += float(1 << (_PRECISION_BITS - 1))
    # PIL clip8: floor(acc / 2^22) clamped to [0, 255].
    return torch.floor_divide(acc, float(1 << _PRECISION_BITS)).clamp_(0, 255).to(torch.int32)


def output_geometry(h: int, w: int, cfg: PreprocessConfig) -> tuple[int, int, int, int]:
    """(resized_h, resized_w, crop_top, crop_left) of a h x w crop, as the HF processor does."""
    s = cfg.image_size
    if cfg.resize_mode == "squash":
        return s, s, 0, 0
    if h <= w:
        new_h, new_w = s, int(s * w / h)
    else:
        new_h, new_w = int(s * h / w), s
    return new_h, new_w, (new_h - s) // 2, (new_w - s) // 2


def resize_crop_uint8(crop: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 [h,w,3] -> uint8 [3,S,S]: PIL-exact resize of the kept window (see module doc)."""
    if crop.dim() != 3 or crop.shape[2] != 3 or crop.dtype != torch.uint8:
        raise ValueError(f"crop must be uint8 [h,w,3], got {crop.dtype} {tuple(crop.shape)}")
    h, w = int(crop.shape[0]), int(crop.shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"crop is empty: {h}x{w}")
    s = cfg.image_size
    new_h, new_w, top, left = output_geometry(h, w, cfg)
    x = crop.cpu().permute(2, 0, 1).to(torch.int32)  # [3,h,w]
    row_idx, row_w = resample_weights(h, new_h, top, s, cfg.interpolation)
    # PIL skips a pass whose size does not change; with integer taps it is the identity anyway.
    if w != new_w:
        used = row_idx[row_w != 0] if h != new_h else torch.arange(top, top + s)
        first, last = int(used.min()), int(used.max()) + 1
        col_idx, col_w = resample_weights(w, new_w, left, s, cfg.interpolation)
        x = _pass(x[:, first:last], col_idx, col_w)
        row_idx = row_idx - first
    else:
        x = x[:, :, left : left + s]
    if h != new_h:
        x = _pass(x.transpose(1, 2), row_idx.clamp(0, x.shape[1] - 1), row_w).transpose(1, 2)
    else:
        x = x[:, top : top + s]
    return x.to(torch.uint8).contiguous()


def preprocess_crops(crops: list[torch.Tensor], cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 [h,w,3] crops -> float32 [B,3,S,S] normalised pixels (HF CLIPImageProcessor)."""
    s = cfg.image_size
    if not crops:
        return torch.empty((0, 3, s, s), dtype=torch.float32)
    pixels = torch.stack([resize_crop_uint8(c, cfg) for c in crops])
    # HF rescales in float64 then casts to float32, and normalises in float32.
    return normalize((pixels.to(torch.float64) * (1 / 255)).to(torch.float32), cfg)


def normalize(pixels01: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """[B,3,S,S] float32 pixels in 0..1 -> CLIP-normalised, on the pixels' device."""
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=pixels01.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=pixels01.device).view(1, 3, 1, 1)
    return (pixels01 - mean) / std
