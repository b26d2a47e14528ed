"""Aligned depth and CameraInfo per camera, paired with colour frames by stamp (no rclpy).

The executor thread stores depth messages (undecoded) in a short ring per camera and keeps the
newest CameraInfo; the inference thread asks for the depth of the colour frame it is about to
process. Depth that comes a little after its colour frame is waited for (``wait_s``), never
longer. Bad depth never costs the colour frame: the frame is processed without positions and
the problem is counted per camera and reason (DEPTH_PROBLEMS), as bad images are.

Messages are duck-typed (rclpy messages and rosbags dataclasses both work): depth reads
``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``; CameraInfo reads
``k``, ``width``, ``height``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sgclip_ros.core.geometry import Intrinsics, depth_to_metres

DEPTH_PROBLEMS = (
    "depth_missing",  # no depth within the stamp tolerance of the colour frame
    "depth_encoding",  # not 16UC1 (mm) or 32FC1 (m)
    "depth_malformed",  # data, step and size disagree
    "depth_size_mismatch",  # not aligned: another size than the colour frame
    "depth_all_invalid",  # no pixel with valid depth
    "camera_info_missing",  # no CameraInfo received yet
    "camera_info_invalid",  # K all zero, NaN/inf, or for another image size
)
_DTYPES = {"16UC1": np.dtype("uint16"), "mono16": np.dtype("uint16"), "32FC1": np.dtype("float32")}


class DepthRejected(ValueError):
    """Depth that cannot be used for a frame; ``reason`` is one of DEPTH_PROBLEMS."""

    def __init__(self, reason: str, detail: str):
        if reason not in DEPTH_PROBLEMS:
            raise ValueError(f"unknown depth problem {reason!r}; expected one of {DEPTH_PROBLEMS}")
        super().__init__(detail)
        self.reason, self.detail = reason, detail

    def __str__(self) -> str:
        return f"{self.detail} [{self.reason}]"


def decode_depth(msg) -> np.ndarray:
    """A depth Image as float32 metres (NaN: no data); DepthRejected on anything else."""
    encoding = str(msg.encoding)
    dtype = _DTYPES.get(encoding)
    if dtype is None:
        raise DepthRejected(
            "depth_encoding", f"depth encoding {encoding!r} is not 16UC1 (mm) or 32FC1 (m)"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * dtype.itemsize
    data = msg.data
    size = len(data)
    if height <= 0 or width <= 0 or step < row or size < step * height:
        raise DepthRejected(
            "depth_malformed",
            f"depth {width}x{height} {encoding}: step {step} and {size} bytes do not fit",
        )
    buffer = np.frombuffer(data, np.uint8, step * height)  # array.array, bytes or ndarray
    rows = buffer.reshape(height, step)[:, :row]
    order = ">" if msg.is_bigendian else "<"
    image = np.ascontiguousarray(rows).view(dtype.newbyteorder(order)).reshape(height, width)
    return depth_to_metres(image.astype(dtype), "32FC1" if encoding == "32FC1" else "16UC1")


def intrinsics_from_info(msg) -> Intrinsics:
    """The pinhole intrinsics of a CameraInfo; DepthRejected('camera_info_invalid') if unusable."""
    try:
        return Intrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))
    except (ValueError, TypeError) as exc:
        raise DepthRejected("camera_info_invalid", str(exc)) from exc


@dataclass
class _CameraDepth:
    ring: deque = field(default_factory=lambda: deque(maxlen=30))  # (stamp_ns, msg)
    info: object | None = None


class DepthInput:
    """Depth rings and CameraInfo of the cameras that have depth, and the problem counts."""

    def __init__(self, cameras, tolerance_s: float = 0.02, wait_s: float = 0.1, ring: int = 30):
        self._cameras = {c: _CameraDepth(deque(maxlen=ring)) for c in cameras}
        self._cond = threading.Condition()
        self.tolerance_s, self.wait_s = tolerance_s, wait_s
        self.problems: dict[str, dict[str, int]] = {c: {} for c in cameras}
        self.paired: dict[str, int] = dict.fromkeys(cameras, 0)

    def has(self, camera: str) -> bool:
        return camera in self._cameras

    def put_depth(self, camera: str, stamp_ns: int, msg) -> None:
        with self._cond:
            self._cameras[camera].ring.append((stamp_ns, msg))
            self._cond.notify_all()

    def has_info(self, camera: str) -> bool:
        return self._cameras[camera].info is not None

    def put_info(self, camera: str, msg) -> None:
        with self._cond:
            self._cameras[camera].info = msg

    def clear(self, camera: str) -> None:
        """Forget the camera's depth (a clock jump: old stamps no longer compare)."""
        with self._cond:
            self._cameras[camera].ring.clear()

    def lookup(self, camera: str, stamp_ns: int, width: int, height: int):
        """(depth in metres, intrinsics) for the colour frame, or None with the problem counted."""
        try:
            msg, info = self._wait_for(camera, stamp_ns)
            intrinsics = intrinsics_from_info(info)
            if (intrinsics.width, intrinsics.height) != (width, height):
                raise DepthRejected(
                    "camera_info_invalid",
                    f"camera info is for {intrinsics.width}x{intrinsics.height}, "
                    f"the image is {width}x{height}",
                )
            depth = decode_depth(msg)
            if depth.shape != (height, width):
                raise DepthRejected(
                    "depth_size_mismatch",
                    f"depth is {depth.shape[1]}x{depth.shape[0]}, the image is {width}x{height}"
                    " (use the depth aligned to the colour camera)",
                )
            if not np.isfinite(depth).any():
                raise DepthRejected("depth_all_invalid", "no pixel of the depth image is valid")
        except DepthRejected as exc:
            self.count(camera, exc.reason)
            raise
        self.paired[camera] += 1
        return depth, intrinsics

    def count(self, camera: str, reason: str) -> None:
        with self._cond:
            per = self.problems.setdefault(camera, {})
            per[reason] = per.get(reason, 0) + 1

    def _wait_for(self, camera: str, stamp_ns: int):
        """The depth message nearest ``stamp_ns`` within the tolerance, waiting up to wait_s
        while none newer than the window has arrived yet."""
        deadline = time.monotonic() + self.wait_s
        tol = int(self.tolerance_s * 1e9)
        with self._cond:
            state = self._cameras[camera]
            while True:
                best = _nearest(state.ring, stamp_ns, tol)
                passed = state.ring and state.ring[-1][0] > stamp_ns + tol
                left = deadline - time.monotonic()
                if best is not None or passed or left <= 0:
                    break
                self._cond.wait(left)
            if state.info is None:
                raise DepthRejected("camera_info_missing", "no CameraInfo received yet")
            if best is None:
                raise DepthRejected(
                    "depth_missing",
                    f"no depth within {self.tolerance_s:g} s of the frame's stamp",
                )
            return best, state.info


def _nearest(ring, stamp_ns: int, tol_ns: int):
    best, best_dt = None, None
    for stamp, msg in ring:
        dt = abs(stamp - stamp_ns)
        if dt <= tol_ns and (best_dt is None or dt < best_dt):
            best, best_dt = msg, dt
    return best
