"""sensor_msgs Image / CompressedImage -> RGB: every encoding, padding, endianness, rejections."""

from __future__ import annotations

import array
import sys
import types

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from sgclip_ros.core.input_checks import FrameRejected
from sgclip_ros.ros import image_conversion as ic
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb, rgb_to_image_msg

H, W = 24, 36
LIMIT = 10_000


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> Image:
    """An Image whose rows are ``pixels`` rows (as bytes) followed by ``pad`` junk bytes."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.is_bigendian = int(big)
    msg.step = data.shape[1]
    msg.data = array.array("B", data.tobytes())
    return msg


def _reject(fn, *args) -> FrameRejected:
    with pytest.raises(FrameRejected) as info:
        fn(*args)
    return info.value


def _grey3(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2)


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize(
    "encoding, make",
    [
        ("rgb8", lambda c: c),
        ("bgr8", lambda c: c[:, :, ::-1]),
        ("8UC3", lambda c: c[:, :, ::-1]),
        ("rgba8", lambda c: np.dstack([c, np.full(c.shape[:2], 77, np.uint8)])),
        ("bgra8", lambda c: np.dstack([c[:, :, ::-1], np.full(c.shape[:2], 77, np.uint8)])),
        ("8UC4", lambda c: np.dstack([c[:, :, ::-1], np.full(c.shape[:2], 9, np.uint8)])),
    ],
)
def test_colour_encodings_give_the_rgb_pixels(rgb, encoding, make, pad):
    out = image_to_rgb(_image(np.ascontiguousarray(make(rgb)), encoding, pad), LIMIT)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
@pytest.mark.parametrize("pad", [0, 3])
def test_mono8_is_replicated_to_three_channels(rgb, encoding, pad):
    grey = rgb[:, :, 1].copy()
    out = image_to_rgb(_image(grey, encoding, pad), LIMIT)
    np.testing.assert_array_equal(out, _grey3(grey))


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 4])
def test_mono16_keeps_the_high_byte_in_either_byte_order(big, pad):
    values = np.random.default_rng(3).integers(0, 65536, (H, W), dtype=np.uint16)
    pixels = values.astype(">u2" if big else "<u2")
    out = image_to_rgb(_image(pixels, "mono16", pad, big=big), LIMIT)
    np.testing.assert_array_equal(out, _grey3((values >> 8).astype(np.uint8)))


def test_unpadded_rgb8_is_not_copied_and_padded_rgb8_is_contiguous(rgb):
    msg = _image(rgb, "rgb8")
    out = image_to_rgb(msg, LIMIT)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    padded = image_to_rgb(_image(rgb, "rgb8", pad=7), LIMIT)
    assert padded.flags.c_contiguous and padded.flags.writeable


def test_read_only_buffers_come_back_writable(rgb):
    class Msg:  # a duck-typed message holding immutable bytes
        height, width, encoding, is_bigendian, step = H, W, "rgb8", 0, W * 3
        data = rgb.tobytes()

    out = image_to_rgb(Msg(), LIMIT)
    assert out.flags.writeable
    np.testing.assert_array_equal(out, rgb)


def test_rosbags_messages_convert_the_same_way(rgb):
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](1, 2), frame_id="f")
    data = np.ascontiguousarray(rgb[:, :, ::-1]).reshape(-1)
    msg = t["sensor_msgs/msg/Image"](header, H, W, "bgr8", 0, W * 3, data)
    np.testing.assert_array_equal(image_to_rgb(msg, LIMIT), rgb)


def test_unknown_and_depth_encodings_are_unsupported(rgb):
    for encoding in ("float_rainbow", "32FC1", "16UC1", ""):
        exc = _reject(image_to_rgb, _image(rgb, encoding), LIMIT)
        assert exc.reason == "unsupported_encoding"
        assert repr(encoding) in exc.detail


def test_zero_sizes_are_bad_size():
    msg = Image(height=0, width=10, encoding="rgb8", step=30)
    exc = _reject(image_to_rgb, msg, LIMIT)
    assert exc.reason == "bad_size" and "10x0" in exc.detail
    msg = Image(height=4, width=0, encoding="mono8", step=0)
    assert _reject(image_to_rgb, msg, LIMIT).reason == "bad_size"


@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuyv", "yuv422_yuy2", "nv21"])
def test_odd_width_for_shared_chroma_is_bad_size(encoding):
    msg = Image(height=4, width=5, encoding=encoding, step=10)
    msg.data = array.array("B", bytes(40))
    exc = _reject(image_to_rgb, msg, LIMIT)
    assert exc.reason == "bad_size" and "even width" in exc.detail


def test_step_smaller_than_a_row_is_step_mismatch(rgb):
    msg = _image(rgb, "rgb8")
    msg.step = W * 3 - 1
    exc = _reject(image_to_rgb, msg, LIMIT)
    assert exc.reason == "step_mismatch"
    assert f"step {W * 3 - 1} < width {W} * 3 bytes" in exc.detail


@pytest.mark.parametrize("delta", [-1, 1, -W * 3])
def test_data_length_must_be_step_times_height(rgb, delta):
    msg = _image(rgb, "rgb8")
    raw = bytes(msg.data)
    msg.data = array.array("B", raw[:delta] if delta < 0 else raw + bytes(delta))
    exc = _reject(image_to_rgb, msg, LIMIT)
    assert exc.reason == "step_mismatch" and f"{len(raw) + delta} bytes" in exc.detail


def test_more_than_max_pixels_is_too_large_and_zero_means_no_limit(rgb):
    msg = _image(rgb, "rgb8")
    exc = _reject(image_to_rgb, msg, H * W - 1)
    assert exc.reason == "too_large" and f"max_pixels {H * W - 1}" in exc.detail
    image_to_rgb(msg, H * W)
    image_to_rgb(msg, 0)
    # A header announcing a huge image is refused before its (missing) data is looked at.
    huge = Image(height=100_000, width=100_000, encoding="rgb8", step=300_000)
    assert _reject(image_to_rgb, huge, LIMIT).reason == "too_large"


@pytest.fixture
def bridge(monkeypatch):
    """Install a fake cv_bridge module (or none) and clear the cached lookup around the test."""
    ic._cv_bridge.cache_clear()

    def install(converter):
        if converter is None:
            monkeypatch.setitem(sys.modules, "cv_bridge", None)  # import raises ImportError
            return None
        calls = []

        class CvBridge:
            def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
                calls.append((msg.encoding, desired_encoding))
                return converter(msg)

        monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=CvBridge))
        return calls

    yield install
    ic._cv_bridge.cache_clear()


def _bayer(width=8, height=6) -> Image:
    msg = Image(height=height, width=width, encoding="bayer_rggb8", step=width)
    msg.data = array.array("B", bytes(range(width * height)))
    return msg


def test_rare_encodings_without_cv_bridge_are_rejected(bridge):
    bridge(None)
    exc = _reject(image_to_rgb, _bayer(), LIMIT)
    assert exc.reason == "no_cv_bridge" and "bayer_rggb8" in exc.detail


def test_rare_encodings_go_through_cv_bridge_when_present(bridge):
    expected = np.full((6, 8, 3), 42, np.uint8)
    calls = bridge(lambda msg: expected)
    np.testing.assert_array_equal(image_to_rgb(_bayer(), LIMIT), expected)
    assert calls == [("bayer_rggb8", "rgb8")]


def test_rare_encodings_still_get_size_checks_before_cv_bridge(bridge):
    calls = bridge(lambda msg: np.zeros((6, 8, 3), np.uint8))
    msg = _bayer()
    msg.step = 7
    assert _reject(image_to_rgb, msg, LIMIT).reason == "step_mismatch"
    assert _reject(image_to_rgb, _bayer(), 47).reason == "too_large"
    assert calls == []


def test_cv_bridge_failures_become_rejections(bridge):
    def fail(msg):
        raise RuntimeError("boom")

    bridge(fail)
    exc = _reject(image_to_rgb, _bayer(), LIMIT)
    assert exc.reason == "unsupported_encoding" and "boom" in exc.detail
    ic._cv_bridge.cache_clear()
    bridge(lambda msg: np.zeros((6, 8), np.uint8))
    assert "not HxWx3" in _reject(image_to_rgb, _bayer(), LIMIT).detail


# ---- compressed ---------------------------------------------------------------------------
def _smooth(h=48, w=64) -> np.ndarray:
    """Smooth colours (gradients) so jpeg errors stay small; red left, blue right."""
    x = np.linspace(0, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    img = np.stack([255 * (1 - x) + 0 * y, 128 * y + 0 * x, 255 * x + 0 * y], axis=2)
    return img.astype(np.uint8)


def _compressed(rgb: np.ndarray, ext: str, fmt: str) -> CompressedImage:
    ok, enc = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", enc.tobytes())
    return msg


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "", "PNG"])
def test_png_round_trips_exactly(fmt):
    img = _smooth()
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(img, ".png", fmt), LIMIT), img)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "jpg", ""])
def test_jpeg_round_trips_with_the_right_colour_order(fmt):
    img = _smooth()
    out = compressed_to_rgb(_compressed(img, ".jpg", fmt), LIMIT)
    assert out.shape == img.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - img.astype(int))
    assert err.mean() < 4
    swapped = np.abs(out.astype(int) - img[:, :, ::-1].astype(int)).mean()
    assert swapped > 10 * err.mean()  # a red/blue swap would show here


def test_jpeg_padded_with_zeros_after_its_end_marker_still_decodes():
    img = _smooth()
    msg = _compressed(img, ".jpg", "jpeg")
    msg.data.extend(bytes(1000))  # some camera drivers hand out zero-padded buffers
    out = compressed_to_rgb(msg, LIMIT)
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 4


def test_decoding_without_imread_rgb_gives_the_same_pixels(monkeypatch):
    img = _smooth()
    msg = _compressed(img, ".png", "png")
    monkeypatch.setattr(ic, "_IMREAD_RGB", None)
    np.testing.assert_array_equal(compressed_to_rgb(msg, LIMIT), img)


def _garble_idat(png: bytes) -> bytes:
    data = bytearray(png)
    start = data.index(b"IDAT") + 8
    for k in range(start, start + 32):
        data[k] ^= 0x5A
    return bytes(data)


def test_corrupt_compressed_data_is_rejected():
    good = bytes(_compressed(_smooth(), ".jpg", "jpeg").data)
    png = bytes(_compressed(_smooth(), ".png", "png").data)
    cases = {
        "random": np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "empty": b"",
        "truncated jpeg": good[: len(good) // 2],
        "jpeg header only": good[:20],
        "truncated png": png[: len(png) // 2],
        "garbled jpeg": good[:200] + bytes(len(good) - 200),
        "png with garbled pixel data": _garble_idat(png),  # headers fine, decoder fails
    }
    for name, data in cases.items():
        msg = CompressedImage(format="png" if "png" in name else "jpeg")
        msg.data = array.array("B", data)
        exc = _reject(compressed_to_rgb, msg, LIMIT)
        assert exc.reason == "corrupt_compressed", name


@pytest.mark.parametrize("fmt", ["tiff", "16UC1; compressedDepth png", "theora"])
def test_formats_other_than_jpeg_png_are_unsupported(fmt):
    msg = _compressed(_smooth(), ".png", fmt)
    assert _reject(compressed_to_rgb, msg, LIMIT).reason == "unsupported_encoding"


def _patched_size(ext: str, width: int, height: int) -> CompressedImage:
    """A real image whose header is edited to announce ``width`` x ``height``."""
    msg = _compressed(_smooth(), ext, ext[1:])
    data = bytearray(msg.data)
    if ext == ".png":
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    msg.data = array.array("B", bytes(data))
    return msg


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_size_is_checked_from_the_header_before_decoding(ext, monkeypatch):
    def no_decode(*args):
        raise AssertionError("imdecode must not run for an oversized header")

    monkeypatch.setattr(ic.cv2, "imdecode", no_decode)
    exc = _reject(compressed_to_rgb, _patched_size(ext, 60_000, 60_000), LIMIT)
    assert exc.reason == "too_large" and "60000x60000" in exc.detail


def test_decoded_compressed_size_respects_max_pixels():
    img = _smooth()
    msg = _compressed(img, ".png", "png")
    assert _reject(compressed_to_rgb, msg, img.shape[0] * img.shape[1] - 1).reason == "too_large"


# ---- rgb -> Image -----------------------------------------------------------------------
def test_rgb_to_image_msg_round_trips_and_keeps_the_header(rgb):
    header = Header(frame_id="cam_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = rgb_to_image_msg(rgb, header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", H, W, W * 3)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 34
    np.testing.assert_array_equal(image_to_rgb(msg, LIMIT), rgb)
    view = np.asarray(rgb[:, ::2])  # non-contiguous input is fine
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image_msg(view), LIMIT), view)


def test_rgb_to_image_msg_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_image_msg(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_image_msg(np.zeros((4, 4), np.uint8))
