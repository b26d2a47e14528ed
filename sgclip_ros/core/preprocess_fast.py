"""Device-side approximate crop preprocessing (``PredictorConfig.preprocess="fast"``).

The default path (:mod:`sgclip_ros.core.preprocess`) reproduces PIL's 8-bit bicubic resampler
bit for bit, on the CPU. On a GPU that CPU work, not the encoders, bounds the frame rate. This
path keeps the same geometry (shortest side to S, center crop S x S) but resamples each crop's
kept window with ``torch.nn.functional.interpolate(..., antialias=True)`` on the crop's device
(float, one rounding to 8 bits at the end instead of PIL's two). Crops up to 16:1 are resized
whole and then cut, with the exact geometry; longer ones resample only their kept window,
snapped to whole input pixels (a shift of at most half an input pixel along the long side).
Measured difference to the exact path: docs/engines.md ("Fast preprocessing").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sgclip_ros.core.model_config import PreprocessConfig
from sgclip_ros.core.preprocess import normalize, output_geometry

PREPROCESS_MODES = ("exact", "fast")
# Crops whose resized size is at most this many S x S squares are resized whole and then cut
# (exact geometry); longer ones resample only their kept window (bounded work and memory).
FULL_RESIZE_LIMIT = 16


def source_window(h: int, w: int, cfg: PreprocessConfig) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) input pixels that map onto the S x S output, snapped to integers."""
    s = cfg.image_size
    new_h, new_w, top, left = output_geometry(h, w, cfg)

    def span(start: int, new: int, size: int) -> tuple[int, int]:
        scale = size / new
        a = min(max(int(round(start * scale)), 0), size - 1)
        b = min(max(int(round((start + s) * scale)), a + 1), size)
        return a, b

    y0, y1 = span(top, new_h, h)
    x0, x1 = span(left, new_w, w)
    return y0, y1, x0, x1


def resize_crop_fast(crop: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """uint8 [h,w,3] -> float32 [3,S,S] in 0..255 (not yet rounded), on the crop's device."""
    if crop.dim() != 3 or crop.shape[2] != 3 or crop.dtype != torch.uint8:
        raise ValueError(f"crop must be uint8 [h,w,3], got {crop.dtype} {tuple(crop.shape)}")
    h, w = int(crop.shape[0]), int(crop.shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"crop is empty: {h}x{w}")
    s = cfg.image_size
    new_h, new_w, top, left = output_geometry(h, w, cfg)
    x = crop.permute(2, 0, 1).unsqueeze(0).float()
    if new_h * new_w <= FULL_RESIZE_LIMIT * s * s:
        # Resize the whole crop, then cut the centre: the exact path's geometry.
        out = _resize(x, new_h, new_w, cfg)
        return out[0, :, top : top + s, left : left + s]
    y0, y1, x0, x1 = source_window(h, w, cfg)
    return _resize(x[:, :, y0:y1, x0:x1], s, s, cfg)[0]


def _resize(x: torch.Tensor, h: int, w: int, cfg: PreprocessConfig) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode=cfg.interpolation, antialias=True,
                         align_corners=False)


def preprocess_crops_fast(
    crops: list[torch.Tensor], cfg: PreprocessConfig, device: str | torch.device | None = None
) -> torch.Tensor:
    """uint8 crops -> float32 [B,3,S,S] normalised pixels on ``device`` (default: the crops')."""
    s = cfg.image_size
    if not crops:
        return torch.empty((0, 3, s, s), dtype=torch.float32, device=device)
    target = torch.device(device) if device is not None else crops[0].device
    pixels = torch.stack([resize_crop_fast(c.to(target, non_blocking=True), cfg) for c in crops])
    return normalize(pixels.clamp_(0, 255).round_().mul_(1 / 255), cfg)
