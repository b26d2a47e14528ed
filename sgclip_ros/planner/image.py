"""RGB images as PNG data URLs for multimodal prompts (zlib only: no imaging library needed)."""

from __future__ import annotations

import base64
import math
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """An HxWx3 uint8 array as PNG bytes (8-bit RGB, no filtering)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    rows = np.zeros((height, width * 3 + 1), np.uint8)  # a leading 0 per row: filter "None"
    rows[:, 1:] = rgb.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Subsample so the longer side is at most ``max_side`` (bounds the prompt size)."""
    step = math.ceil(max(rgb.shape[:2]) / max_side) if max_side > 0 else 1
    return np.ascontiguousarray(rgb[::step, ::step]) if step > 1 else rgb


def png_data_url(rgb: np.ndarray, max_side: int = 640) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(shrink(rgb, max_side))).decode()
