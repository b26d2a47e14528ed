"""Property tests: sensor_msgs Image / CompressedImage -> RGB on random headers and bytes.

The converters promise that bad input raises FrameRejected with a reason code, never anything
else; that ``precheck`` refuses exactly what the converters refuse on the header; and that
what they return is a C-contiguous HxWx3 uint8 array of the announced size.
"""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fuzz_settings import fuzz
from hypothesis import given
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from sgclip_ros.core.input_checks import DEFAULT_MAX_PIXELS, REJECT_REASONS, FrameRejected
from sgclip_ros.ros import image_conversion as ic
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb, precheck

pytestmark = pytest.mark.ros  # needs the sensor_msgs message classes

FUZZ = fuzz(250)
UINT32 = 2**32 - 1
MAX_DATA = 200_000  # bytes of a generated buffer: keeps every example fast
RAW_BPP = {"rgb8": 3, "bgr8": 3, "8uc3": 3, "rgba8": 4, "bgra8": 4, "8uc4": 4,
           "mono8": 1, "8uc1": 1, "mono16": 2}
maybe_junk = st.integers(0, 4).map(bool)  # True 4 times in 5


@st.composite
def mostly(draw, good, junk):
    """``good`` 4 times in 5, else ``junk``."""
    return draw(good) if draw(maybe_junk) else draw(junk)


LIMITS = mostly(st.sampled_from([0, 10_000, DEFAULT_MAX_PIXELS]), st.sampled_from([1, 64]))
ENCODINGS = mostly(
    st.sampled_from([*ic.SUPPORTED_ENCODINGS, "RGB8", "Mono8", "8uc3", "BGRA8"]),
    st.sampled_from([*ic.CV_BRIDGE_ENCODINGS, "", "16UC1", "32FC1", "rgb16", "jpeg", "rgb8 "])
    | st.text(max_size=12),
)


def _noise(seed: int, n: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _bpp(encoding: str) -> int:
    key = encoding.lower()
    return RAW_BPP.get(key) or ic._BRIDGE_BPP.get(key) or 1


@st.composite
def raw_images(draw):
    """An Image (or a duck-typed stand-in) with mostly consistent, sometimes absurd, fields."""
    encoding = draw(ENCODINGS)
    duck = draw(st.integers(0, 3)) == 0  # rosbags-style object with a numpy buffer
    sizes = st.integers(-3, UINT32) if duck else st.integers(0, UINT32)
    width = draw(mostly(st.integers(1, 48), sizes))
    height = draw(mostly(st.integers(1, 48), sizes))
    step = width * _bpp(encoding) + draw(st.integers(0, 7))
    if not draw(maybe_junk):
        step = draw(sizes)
    size = step * height if 0 <= step * height <= MAX_DATA else 0
    n = draw(mostly(st.just(size), st.integers(0, 3000)))
    data = _noise(draw(st.integers(0, UINT32)), n)
    big = draw(st.sampled_from([0, 1, 255]))
    fields = dict(encoding=encoding, width=width, height=height, step=step, is_bigendian=big)
    if duck:  # the buffer types duck-typed messages carry: numpy (rosbags), bytes, a list
        buffer = draw(st.sampled_from([lambda b: np.frombuffer(b, np.uint8), bytes, list]))
        return SimpleNamespace(**fields, data=buffer(data))
    return Image(**fields, data=array.array("B", data))


def _expected(msg) -> np.ndarray:
    """The RGB pixels of a raw message, straight from the sensor_msgs encoding definitions."""
    key = msg.encoding.lower()
    bpp = RAW_BPP[key]
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    px = rows[:, : msg.width * bpp].reshape(msg.height, msg.width, bpp)
    if key in ("mono8", "8uc1", "mono16"):
        byte = (0 if msg.is_bigendian else 1) if key == "mono16" else 0
        return np.repeat(px[:, :, byte : byte + 1], 3, axis=2)
    return px[:, :, :3] if key in ("rgb8", "rgba8") else px[:, :, 2::-1]


def _reason(fn, *args) -> str | None:
    try:
        fn(*args)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS and str(exc)
        return exc.reason
    return None


def _check_rgb(rgb, height: int, width: int, max_pixels: int) -> None:
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8
    assert rgb.shape == (height, width, 3) and rgb.flags.c_contiguous
    assert max_pixels == 0 or height * width <= max_pixels


@FUZZ
@given(raw_images(), LIMITS)
def test_raw_images_convert_to_rgb_or_raise_frame_rejected(msg, max_pixels):
    before = _reason(precheck, msg, max_pixels)
    try:
        rgb = image_to_rgb(msg, max_pixels)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS
        # precheck refuses for the same reason; past precheck only cv_bridge itself may fail
        assert before == exc.reason or (before is None and exc.reason == "unsupported_encoding"
                                         and msg.encoding.lower() in ic._BRIDGE_BPP)
        return
    assert before is None
    _check_rgb(rgb, int(msg.height), int(msg.width), max_pixels)
    if msg.encoding.lower() in RAW_BPP:
        np.testing.assert_array_equal(rgb, _expected(msg))


# ---- compressed -------------------------------------------------------------------------------
FORMATS = [
    "jpeg", "png", "jpg", "JPEG", "", " ", "rgb8; jpeg compressed bgr8", "bgr8; png compressed",
    "16UC1; compressedDepth png", "compressedDepth", "tiff", "bmp", "raw",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _encode(seed: int, height: int, width: int, ext: str) -> tuple[np.ndarray, bytes]:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return rgb, buf.tobytes()


@st.composite
def compressed_images(draw):
    """(message, original RGB when the data is an intact png/jpeg of it, else None, max_pixels)."""
    fmt = draw(mostly(st.sampled_from(FORMATS), st.text(max_size=24)))
    max_pixels = draw(LIMITS)
    seed = draw(st.integers(0, UINT32))
    # forged headers stay small without a pixel limit: OpenCV would allocate what they announce
    dims = st.integers(0, 2**16 - 1) if max_pixels else st.integers(0, 256)
    kind = draw(st.sampled_from(["png", "jpeg", "cut", "flip", "pad", "ihdr", "sof", "noise"]))
    original = None
    if kind in ("png", "jpeg", "cut", "flip", "pad"):
        ext = draw(st.sampled_from([".png", ".jpg"]))
        rgb, data = _encode(seed, draw(st.integers(1, 24)), draw(st.integers(1, 24)), ext)
        if kind in ("png", "jpeg"):
            original = rgb if ext == ".png" else np.zeros_like(rgb)  # jpeg: only the shape
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "flip":
            buf = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
            data = bytes(buf)
        else:
            data += b"\x00" * draw(st.integers(1, 5000))
    elif kind == "ihdr":
        width, height = draw(dims), draw(dims)
        data = (PNG_MAGIC + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big")
                + height.to_bytes(4, "big") + _noise(seed, draw(st.integers(0, 64))))
    elif kind == "sof":
        marker = draw(st.sampled_from([0xC0, 0xC1, 0xC2, 0xC4, 0xCF, 0xDB, 0xE0, 0xDA, 0xD9]))
        seg = (bytes([0xFF, marker, 0, 17, 8]) + draw(dims).to_bytes(2, "big")
               + draw(dims).to_bytes(2, "big"))
        data = b"\xff\xd8" + seg + _noise(seed, draw(st.integers(0, 64)))
        if draw(st.booleans()):
            data += b"\xff\xd9"
    else:
        data = _noise(seed, draw(st.integers(0, 300)))
    if draw(st.integers(0, 3)) == 0:  # duck-typed message: numpy (rosbags), bytes or a list
        buffer = draw(st.sampled_from([lambda b: np.frombuffer(b, np.uint8), bytes, list]))
        msg = SimpleNamespace(format=fmt, data=buffer(data))
    else:
        msg = CompressedImage(format=fmt, data=array.array("B", data))
    return msg, original, max_pixels


@FUZZ
@given(compressed_images())
def test_compressed_images_decode_to_rgb_or_raise_frame_rejected(case):
    msg, original, max_pixels = case
    before = _reason(precheck, msg, max_pixels)
    try:
        rgb = compressed_to_rgb(msg, max_pixels)
    except FrameRejected as exc:
        # the header checks are shared: precheck refuses for the same reason, or lets the
        # frame through and only the decoder finds it corrupt
        assert before == exc.reason or (before is None and exc.reason == "corrupt_compressed")
        if original is not None and before is None:
            raise AssertionError(f"an intact image was refused: {exc}") from exc
        return
    assert before is None
    _check_rgb(rgb, rgb.shape[0], rgb.shape[1], max_pixels)
    width, height = ic._announced_size(ic._as_uint8(msg.data))
    if original is not None:
        assert rgb.shape == original.shape
        if original.any():  # png is lossless
            np.testing.assert_array_equal(rgb, original)
    else:
        assert rgb.shape[:2] == (height, width)
