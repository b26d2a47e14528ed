"""sensor_msgs Image / CompressedImage <-> RGB uint8 numpy arrays, without cv_bridge.

Raw images are converted with numpy views of the message buffer (at most one copy), compressed
jpeg/png with OpenCV. The converters are duck-typed: rclpy messages and rosbags dataclasses both
work, as they only read ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``
(and ``format``). Bad input raises FrameRejected with a reason code, never anything else.
Rarer encodings (Bayer, YUV) go through cv_bridge when it is importable, as on robots.
"""

from __future__ import annotations

import array
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from sgclip_ros.core.input_checks import FrameRejected

if TYPE_CHECKING:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header


@dataclass(frozen=True)
class _Raw:
    """How a raw encoding is laid out: bytes per pixel and the channel slice that reads RGB."""

    bytes_per_pixel: int
    rgb: slice | None  # None: one grey channel


_RGB, _BGR = slice(0, 3), slice(2, None, -1)
# numpy-only encodings. 8UC3/8UC4 follow OpenCV's (and cv_bridge's) BGR convention.
_RAW: dict[str, _Raw] = {
    "rgb8": _Raw(3, _RGB),
    "bgr8": _Raw(3, _BGR),
    "8uc3": _Raw(3, _BGR),
    "rgba8": _Raw(4, _RGB),
    "bgra8": _Raw(4, _BGR),
    "8uc4": _Raw(4, _BGR),
    "mono8": _Raw(1, None),
    "8uc1": _Raw(1, None),
    "mono16": _Raw(2, None),  # the high byte of each pixel is picked by is_bigendian
}
SUPPORTED_ENCODINGS: tuple[str, ...] = (
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "mono16",
    "8UC1",
    "8UC3",
    "8UC4",
)

# encoding -> bytes per pixel, for those only cv_bridge converts.
_BRIDGE_BPP: dict[str, int] = {
    **{f"bayer_{p}8": 1 for p in ("rggb", "bggr", "gbrg", "grbg")},
    **{f"bayer_{p}16": 2 for p in ("rggb", "bggr", "gbrg", "grbg")},
    **dict.fromkeys(("yuv422", "uyvy", "yuv422_yuy2", "yuyv"), 2),
    **dict.fromkeys(("nv12", "nv21", "nv24"), 1),  # the Y plane; chroma follows it
}
CV_BRIDGE_ENCODINGS: tuple[str, ...] = tuple(_BRIDGE_BPP)
_EVEN_WIDTH = {"yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21"}  # 2 pixels share chroma
_EVEN_HEIGHT = {"nv12", "nv21"}  # 4:2:0: 2 rows share chroma
_PLANAR = {"nv12", "nv21", "nv24"}  # data is longer than step * height: left to cv_bridge

# Decoding straight to RGB saves a colour conversion where OpenCV has it (>= 4.10).
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_to_rgb(msg, max_pixels: int) -> np.ndarray:
    """A sensor_msgs/Image as a C-contiguous HxWx3 uint8 RGB array (``max_pixels`` 0 = no limit).

    The result may share memory with ``msg.data`` (rgb8 without row padding is not copied).
    """
    encoding = str(msg.encoding)
    key = encoding.lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if key in _RAW:
        layout = _RAW[key]
        _check_layout(key, width, height, step, layout.bytes_per_pixel, len(msg.data), max_pixels)
        return _convert_raw(msg.data, height, width, step, layout, bool(msg.is_bigendian))
    if key in _BRIDGE_BPP:
        data_len = None if key in _PLANAR else len(msg.data)
        _check_layout(key, width, height, step, _BRIDGE_BPP[key], data_len, max_pixels)
        return _via_cv_bridge(msg, encoding)
    raise FrameRejected(
        "unsupported_encoding",
        f"encoding {encoding!r} is not supported; numpy handles {', '.join(SUPPORTED_ENCODINGS)}"
        f" and cv_bridge (when installed) Bayer/YUV",
    )


def precheck(msg, max_pixels: int) -> None:
    """The cheap header checks of ``image_to_rgb``/``compressed_to_rgb``, without converting.

    Callbacks run this so that malformed frames are rejected (and counted by their own reason)
    before the latest-frame slot, where a newer frame could replace them first.
    """
    if hasattr(msg, "format"):
        _check_format(str(msg.format))
        buf = _as_uint8(msg.data)
        if buf.size == 0:
            raise FrameRejected("corrupt_compressed", "compressed image has no data")
        _check_pixels(*_announced_size(buf), max_pixels)
        return
    key = str(msg.encoding).lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if key in _RAW:
        _check_layout(key, width, height, step, _RAW[key].bytes_per_pixel, len(msg.data),
                      max_pixels)
    elif key in _BRIDGE_BPP:
        data_len = None if key in _PLANAR else len(msg.data)
        _check_layout(key, width, height, step, _BRIDGE_BPP[key], data_len, max_pixels)
        bridge, why = _cv_bridge()
        if bridge is None:
            raise FrameRejected("no_cv_bridge", f"encoding {key!r} needs cv_bridge ({why})")
    else:
        raise FrameRejected("unsupported_encoding", f"encoding {msg.encoding!r} is not supported")


def _check_layout(
    key: str, width: int, height: int, step: int, bpp: int, data_len: int | None, max_pixels: int
) -> None:
    """Raise FrameRejected for impossible sizes, too many pixels, or step/data mismatches."""
    if width <= 0 or height <= 0:
        raise FrameRejected("bad_size", f"image size {width}x{height} has a zero dimension")
    if key in _EVEN_WIDTH and width % 2:
        raise FrameRejected("bad_size", f"{key} needs an even width, got {width}")
    if key in _EVEN_HEIGHT and height % 2:
        raise FrameRejected("bad_size", f"{key} needs an even height, got {height}")
    _check_pixels(width, height, max_pixels)
    if step < width * bpp:
        raise FrameRejected(
            "step_mismatch", f"step {step} < width {width} * {bpp} bytes per pixel ({key})"
        )
    if data_len is not None and data_len != step * height:
        raise FrameRejected(
            "step_mismatch",
            f"data has {data_len} bytes, step {step} * height {height} = {step * height}",
        )


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if max_pixels > 0 and width * height > max_pixels:
        raise FrameRejected(
            "too_large", f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}"
        )


def _as_uint8(data) -> np.ndarray:
    """The message buffer as a flat uint8 array, without copying where the buffer allows."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a plain list of ints (possible with duck-typed messages)
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _convert_raw(data, height: int, width: int, step: int, layout: _Raw, big: bool) -> np.ndarray:
    """View the padded rows as [H, W, bpp] and pick the RGB bytes (one copy at most)."""
    bpp = layout.bytes_per_pixel
    rows = _as_uint8(data).reshape(height, step)
    pixels = rows[:, : width * bpp].reshape(height, width, bpp)
    if layout.rgb is None:
        # mono16 -> 8 bit keeps the high byte (value >> 8), as cv_bridge's scaling does.
        byte = (0 if big else 1) if bpp == 2 else 0
        return np.repeat(pixels[:, :, byte : byte + 1], 3, axis=2)
    if layout.rgb == _RGB and bpp == 3:
        # Already RGB: a view when rows are unpadded and the buffer writable (torch needs that).
        return np.require(pixels, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
    return np.ascontiguousarray(pixels[:, :, layout.rgb])


@functools.lru_cache(maxsize=1)
def _cv_bridge():
    """(CvBridge instance, "") or (None, why it is unavailable); cached, import is slow."""
    try:
        from cv_bridge import CvBridge

        return CvBridge(), ""
    except Exception as exc:  # a broken install (e.g. the ROS 1 PyPI port) counts as none
        return None, f"{type(exc).__name__}: {exc}"


def _via_cv_bridge(msg, encoding: str) -> np.ndarray:
    bridge, why = _cv_bridge()
    if bridge is None:
        raise FrameRejected(
            "no_cv_bridge", f"encoding {encoding!r} needs cv_bridge, which is unavailable ({why})"
        )
    try:
        rgb = bridge.imgmsg_to_cv2(msg, "rgb8")
    except Exception as exc:  # cv_bridge raises its own CvBridgeError or cv2.error
        raise FrameRejected(
            "unsupported_encoding", f"cv_bridge could not convert {encoding!r}: {exc}"
        ) from exc
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FrameRejected(
            "unsupported_encoding",
            f"cv_bridge turned {encoding!r} into {rgb.dtype} {rgb.shape}, not HxWx3 uint8",
        )
    return np.ascontiguousarray(rgb)


def compressed_to_rgb(msg, max_pixels: int) -> np.ndarray:
    """A jpeg/png sensor_msgs/CompressedImage as a C-contiguous HxWx3 uint8 RGB array."""
    _check_format(str(msg.format))
    buf = _as_uint8(msg.data)
    if buf.size == 0:
        raise FrameRejected("corrupt_compressed", "compressed image has no data")
    width, height = _announced_size(buf)
    # The header is checked first so an absurd announced size is never decoded.
    _check_pixels(width, height, max_pixels)
    try:
        img = cv2.imdecode(buf, _IMREAD_RGB if _IMREAD_RGB is not None else cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise FrameRejected("corrupt_compressed", f"OpenCV could not decode it: {exc}") from exc
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise FrameRejected("corrupt_compressed", f"OpenCV could not decode {width}x{height} data")
    _check_pixels(img.shape[1], img.shape[0], max_pixels)
    if _IMREAD_RGB is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _check_format(fmt: str) -> None:
    """Accept ROS format strings naming jpeg or png ("jpeg", "rgb8; jpeg compressed bgr8")."""
    low = fmt.lower()
    if "compresseddepth" in low:
        raise FrameRejected(
            "unsupported_encoding", f"format {fmt!r} is compressed depth, not a camera image"
        )
    # An empty format is common from hand-written publishers: the magic bytes decide then.
    if low.strip() and not any(k in low for k in ("jpeg", "jpg", "png")):
        raise FrameRejected(
            "unsupported_encoding", f"compressed format {fmt!r} is neither jpeg nor png"
        )


def _announced_size(buf: np.ndarray) -> tuple[int, int]:
    """(width, height) from the PNG IHDR or JPEG frame header; FrameRejected when there is none."""
    view = memoryview(buf)
    if bytes(view[:8]) == _PNG_MAGIC:
        size = _png_size(view)
    elif bytes(view[:2]) == b"\xff\xd8":
        size = _jpeg_size(view)
        # libjpeg decodes a cut-off stream with grey rows instead of failing, so look for the
        # end marker; some camera drivers pad frames with zeros after it.
        tail = bytes(view[-4096:]).rstrip(b"\x00")
        if size and b"\xff\xd9" not in tail[-64:]:
            raise FrameRejected("corrupt_compressed", "jpeg data has no end marker (truncated)")
    else:
        raise FrameRejected("corrupt_compressed", "data starts with neither a jpeg nor png header")
    if size is None or size[0] <= 0 or size[1] <= 0:
        raise FrameRejected("corrupt_compressed", "no valid image size in the jpeg/png header")
    return size


def _png_size(view: memoryview) -> tuple[int, int] | None:
    if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
        return None
    return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")


def _jpeg_size(view: memoryview) -> tuple[int, int] | None:
    """Walk the marker segments to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC)."""
    i, n = 2, len(view)
    while i + 4 <= n:
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            height = int.from_bytes(view[i + 5 : i + 7], "big")
            return int.from_bytes(view[i + 7 : i + 9], "big"), height
        length = int.from_bytes(view[i + 2 : i + 4], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def rgb_to_image_msg(rgb: np.ndarray, header: Header | None = None) -> Image:
    """An HxWx3 uint8 RGB array as an rgb8 sensor_msgs/Image (for the annotated output)."""
    # Imported here so the readers above also serve the bag runner on machines without ROS.
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be a uint8 numpy array, got {getattr(rgb, 'dtype', type(rgb))}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"rgb must be HxWx3 with H, W > 0, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    data = array.array("B")
    # One copy straight into the message's array (a list of ints would be ~100x slower).
    data.frombytes(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    msg.header = header if header is not None else Header()
    msg.data = data
    return msg
