"""Object and pair crops, pixel-identical to the reference (LASER ``model_utils``).

Reference (video-fm/LASER ``laser/models/model_utils.py`` + ``llava_clip_model_v3.py``):

* object crop (``extract_single_object``):
  ``cv2.addWeighted(img, 0.2, where(~mask, 255, img), 0.8, 0)``, i.e. outside the mask
  ``0.2*img + 0.8*255`` and inside ``0.2*img + 0.8*img`` (= img); then ``img[y1:y2, x1:x2]``.
* pair crop (``extract_object_subject(img, subject_mask, object_mask)``): channel 2 inside the
  subject mask and channel 0 inside the object mask become ``uint8(c + (255 - c) * 0.5)``
  (numpy float64, truncated); pixels outside both masks get the same white blend; then the
  union box is cut out.

The per-pixel maps depend on one uint8 value only, so they are exact lookup tables here; all
work is done on the box region of each crop, never on the whole frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

WHITE_ALPHA = 0.8  # reference ``white_alpha``: weight of white outside the mask(s)
PUSH_ALPHA = 0.5  # reference ``alpha``: how far subject/object channels move toward 255
SUBJECT_CHANNEL = 2  # reference "red" = cv2.split index 2; frames are RGB, so this is blue
OBJECT_CHANNEL = 0  # reference "blue" = index 0; red in RGB

MaskArg = torch.Tensor | Sequence[torch.Tensor | None] | None


def _f32(x: np.ndarray | float) -> np.ndarray:
    return np.float32(x).astype(np.float64)


def add_weighted_lut(alpha: float, beta: float, other: int | None) -> torch.Tensor:
    """uint8[256] table of ``cv2.addWeighted(v, alpha, other, beta, 0)`` for each v.

    OpenCV computes 8-bit addWeighted in float32 as ``fma(a, alpha, fma(b, beta, 0))`` and rounds
    half to even; float64 holds each exact product, so one float32 rounding per fma is emulated
    exactly. ``other=None`` means ``b = v`` (the inside-mask blend of an image with itself).
    """
    v = np.arange(256, dtype=np.float64)
    b = v if other is None else np.full(256, float(other))
    inner = _f32(b * _f32(beta))
    out = _f32(v * _f32(alpha) + inner)
    out = np.clip(np.rint(out), 0, 255)  # rint rounds half to even, like cvRound
    return torch.from_numpy(out.astype(np.uint8))


def push_lut(alpha: float) -> torch.Tensor:
    """uint8[256] table of numpy ``(c + (255 - c) * alpha).astype(uint8)`` (float64, truncated)."""
    c = np.arange(256, dtype=np.float64)
    out = np.clip(c + (255.0 - c) * alpha, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


_LUTS: dict[tuple[str, float], torch.Tensor] = {}


def _lut(kind: str, alpha: float) -> torch.Tensor:
    key = (kind, float(alpha))
    if key not in _LUTS:
        if kind == "white":
            _LUTS[key] = add_weighted_lut(1.0 - alpha, alpha, 255)
        elif kind == "self":
            _LUTS[key] = add_weighted_lut(1.0 - alpha, alpha, None)
        else:
            _LUTS[key] = push_lut(alpha)
    return _LUTS[key]


def _apply(lut: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    return lut.to(pixels.device)[pixels.long()]


def _check_inputs(frame: torch.Tensor, boxes: torch.Tensor) -> tuple[int, int]:
    if frame.dim() != 3 or frame.shape[2] != 3 or frame.dtype != torch.uint8:
        raise ValueError(f"frame must be uint8 [H,W,3], got {frame.dtype} {tuple(frame.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [N,4], got {tuple(boxes.shape)}")
    h, w = frame.shape[:2]
    if len(boxes):
        b = boxes.long()
        bad = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h)
        bad |= (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"box {i} {b[i].tolist()} is empty or outside the {w}x{h} frame "
                "(boxes must be clipped, x2 > x1, y2 > y1)"
            )
    return h, w


def _mask_region(masks: MaskArg, i: int, box: list[int], region: list[int]) -> torch.Tensor | None:
    """Object ``i``'s mask cut to ``region`` (x1,y1,x2,y2); None means the box is the mask."""
    x1, y1, x2, y2 = region
    m = None if masks is None else masks[i]
    if m is not None:
        return m[y1:y2, x1:x2].bool()
    bx1, by1, bx2, by2 = box
    if [bx1, by1, bx2, by2] == region:
        return None  # the whole region is inside: fast path
    out = torch.zeros((y2 - y1, x2 - x1), dtype=torch.bool)
    out[by1 - y1 : by2 - y1, bx1 - x1 : bx2 - x1] = True
    return out


def _check_masks(masks: MaskArg, n: int, h: int, w: int) -> None:
    if masks is None:
        return
    if len(masks) != n:
        raise ValueError(f"got {len(masks)} masks for {n} boxes")
    for i, m in enumerate(masks):
        if m is not None and tuple(m.shape) != (h, w):
            raise ValueError(f"mask {i} has shape {tuple(m.shape)}, expected ({h}, {w})")


def object_crops(
    frame: torch.Tensor,
    boxes: torch.Tensor,
    masks: MaskArg = None,
    white_alpha: float = WHITE_ALPHA,
) -> list[torch.Tensor]:
    """One uint8 [h,w,3] crop per box: outside the mask whitened, cut to the box.

    ``masks``: bool [N,H,W], a sequence of [H,W] bool tensors or None, or None (box = mask).
    """
    h, w = _check_inputs(frame, boxes)
    _check_masks(masks, len(boxes), h, w)
    white = _lut("white", white_alpha)
    inside = _lut("self", white_alpha)
    identity = bool(torch.equal(inside, torch.arange(256, dtype=torch.uint8)))
    crops = []
    for i, box in enumerate(boxes.long().tolist()):
        x1, y1, x2, y2 = box
        region = frame[y1:y2, x1:x2]
        m = _mask_region(masks, i, box, box)
        # Inside the mask the reference blends the image with itself: identity for its alphas.
        kept = region if identity else _apply(inside, region)
        if m is None:
            crops.append(kept.clone())
        else:
            crops.append(torch.where(m.unsqueeze(-1), kept, _apply(white, region)))
    return crops


def union_boxes(boxes: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """int64 [P,4] union box of each (subject, object) pair."""
    b = boxes.long()
    s, o = b[pairs[:, 0]], b[pairs[:, 1]]
    return torch.cat([torch.minimum(s[:, :2], o[:, :2]), torch.maximum(s[:, 2:], o[:, 2:])], 1)


def pair_crops(
    frame: torch.Tensor,
    boxes: torch.Tensor,
    masks: MaskArg,
    pairs: torch.Tensor,
    alpha: float = PUSH_ALPHA,
    white_alpha: float = WHITE_ALPHA,
) -> list[torch.Tensor]:
    """One uint8 crop per (subject, object) pair, as the reference ``extract_object_subject``.

    Subject pixels: channel 2 pushed toward 255; object pixels: channel 0; pixels outside both
    masks whitened; cut to the union of the two boxes.
    """
    h, w = _check_inputs(frame, boxes)
    _check_masks(masks, len(boxes), h, w)
    pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2)
    if len(pairs) and (int(pairs.min()) < 0 or int(pairs.max()) >= len(boxes)):
        raise ValueError(f"pair indices must be in 0..{len(boxes) - 1}")
    white, push = _lut("white", white_alpha), _lut("push", alpha)
    box_list = boxes.long().tolist()
    crops = []
    for (s, o), region_box in zip(pairs.tolist(), union_boxes(boxes, pairs).tolist(), strict=True):
        x1, y1, x2, y2 = region_box
        region = frame[y1:y2, x1:x2]
        ms = _mask_region(masks, s, box_list[s], region_box)
        mo = _mask_region(masks, o, box_list[o], region_box)
        crops.append(_pair_region(region, ms, mo, white, push))
    return crops


def _pair_region(
    region: torch.Tensor,
    ms: torch.Tensor | None,
    mo: torch.Tensor | None,
    white: torch.Tensor,
    push: torch.Tensor,
) -> torch.Tensor:
    """Colour and whiten one union-box region (None mask = whole region inside)."""
    out = region.clone()
    full = torch.ones(region.shape[:2], dtype=torch.bool, device=region.device)
    ms = full if ms is None else ms.to(region.device)
    mo = full if mo is None else mo.to(region.device)
    for mask, ch in ((ms, SUBJECT_CHANNEL), (mo, OBJECT_CHANNEL)):
        c = region[..., ch]
        out[..., ch] = torch.where(mask, _apply(push, c), c)
    outside = ~(ms | mo)
    if bool(outside.any()):
        # Outside both masks no channel was pushed, so whiten the original pixels.
        out = torch.where(outside.unsqueeze(-1), _apply(white, region), out)
    return out
