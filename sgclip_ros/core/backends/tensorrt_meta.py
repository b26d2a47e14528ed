"""TensorRT engine metadata and the compatibility rules checked BEFORE deserialising a plan.

A TensorRT plan deserialises only on the TensorRT version that built it (unless built
version-compatible: then on that version or any later one) and only on the GPU type it was
built on (unless built hardware-compatible: Ampere and newer). Deserialising anything else fails
with a terse error at best. So every build writes ``engine.json`` and the runtime compares it
with the running TensorRT and GPU first, refusing with a sentence that says what to do.

Two TensorRT major versions are supported, 10.x (JetPack 6 robots) and 11.x (``pip install
tensorrt-cu12`` today). A plan never crosses them here, in either direction, even when built
version-compatible: NVIDIA documents 10.x version-compatible plans on an 11.x runtime only
"subject to known issues", and rebuilding on the robot takes minutes, so the guard asks for that.
This module needs neither TensorRT nor a GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENGINE_FORMAT = "sgclip-tensorrt-engine"
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")
MIN_VERSION_COMPATIBLE = (8, 6)
# Majors whose Python API training.build_engine and the backend are written (and tested) against.
SUPPORTED_MAJORS = (10, 11)
AMPERE = (8, 0)
REQUIRED_KEYS = ("format", "tensorrt_version", "gpu_name", "compute_capability", "precision",
                 "hardware_compatibility", "version_compatible", "profiles", "plans")
INSTALL_HINT = (
    "On a Jetson, TensorRT 10.x comes with JetPack (sudo apt install nvidia-jetpack, which "
    "provides python3-libnvinfer); on an x86 robot, pip install tensorrt-cu12 (11.x; or -cu13, "
    "matching PyTorch's CUDA; the wheels download from NVIDIA's index pypi.nvidia.com). Then "
    "build the engines on the robot: python -m training.build_engine --onnx <model_dir>/onnx "
    "(fp32) or --onnx <model_dir>/onnx_fp16 (fp16)"
)


class TensorRTUnavailable(ImportError):
    """``import tensorrt`` failed; the message says how to install it."""


def import_tensorrt():
    """The tensorrt module, or TensorRTUnavailable with installation instructions."""
    try:
        import tensorrt
    except ImportError as exc:  # includes a bindings wheel without its libraries
        raise TensorRTUnavailable(
            f"TensorRT is not installed or not importable ({exc}). {INSTALL_HINT}"
        ) from exc
    return tensorrt


def supported_major(trt) -> int:
    """The running TensorRT's major version, or TensorRTUnavailable when it is not 10 or 11."""
    version = str(getattr(trt, "__version__", "?"))
    try:
        major = parse_version(version)[0]
    except ValueError:
        major = None
    if major not in SUPPORTED_MAJORS:
        raise TensorRTUnavailable(
            f"TensorRT {version} is not supported: sgclip_ros builds and loads engines with the "
            "TensorRT 10.x (JetPack 6) and 11.x Python APIs. " + INSTALL_HINT
        )
    return major


@dataclass(frozen=True)
class TrtRuntime:
    """The running TensorRT and GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor"


def parse_version(text: str) -> tuple[int, ...]:
    """``10.3.0.26`` -> (10, 3, 0, 26); non-numeric suffixes are dropped."""
    parts = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def _same_version(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)) == b + (0,) * (n - len(b))


def major_problems(meta: dict, built: tuple[int, ...], now: tuple[int, ...],
                   running: str) -> list[str]:
    """A plan of one TensorRT major version is never loaded by another (see the module doc)."""
    built_text = str(meta["tensorrt_version"])
    recorded = meta.get("tensorrt_major", built[0])  # engine.json before 11.x support lacks it
    if recorded != built[0]:
        return [f"engine metadata is inconsistent: tensorrt_major {recorded!r} but "
                f"tensorrt_version {built_text}; rebuild with python -m training.build_engine"]
    if built[0] == now[0]:
        return []
    if built[0] > now[0]:
        why = "a newer major's plan never runs on an older TensorRT"
    else:
        why = "plans are not carried across TensorRT major versions here"
        if (built[0], now[0]) == (10, 11):
            why += " (11.x builds strongly typed networks only; JetPack 6 robots stay on 10.x)"
    return [
        f"plan built with TensorRT {built_text} ({built[0]}.x), this machine runs TensorRT "
        f"{running} ({now[0]}.x): {why}; rebuild it on this machine with "
        "python -m training.build_engine"
    ]


def version_problems(meta: dict, running: str) -> list[str]:
    """TensorRT version rules; empty when the plan may be deserialised."""
    built_text = str(meta["tensorrt_version"])
    try:
        built, now = parse_version(built_text), parse_version(running)
    except ValueError as exc:
        return [str(exc)]
    crossing = major_problems(meta, built, now, running)
    if crossing:
        return crossing
    if not meta["version_compatible"]:
        if _same_version(built, now):
            return []
        return [
            f"built with TensorRT {built_text}, running TensorRT {running}: a plan only "
            "deserialises on the TensorRT version that built it; rebuild on this machine "
            "(python -m training.build_engine), or build with --version-compatible"
        ]
    if built[:2] < MIN_VERSION_COMPATIBLE:
        return [f"version-compatible plans need TensorRT >= 8.6 at build time, got {built_text}"]
    if now < built:
        return [
            f"version-compatible plan built with TensorRT {built_text} cannot run on the older "
            f"TensorRT {running}; upgrade TensorRT or rebuild on this machine"
        ]
    return []


def hardware_problems(meta: dict, runtime: TrtRuntime) -> list[str]:
    """GPU rules for the plan's hardware-compatibility level; empty when it may run here."""
    level = meta["hardware_compatibility"]
    built_cc, here_cc = str(meta["compute_capability"]), runtime.compute_capability
    built_name = meta["gpu_name"]
    if level not in HARDWARE_LEVELS:
        return [f"unknown hardware_compatibility {level!r}"]
    if level == "ampere_plus":
        if parse_version(here_cc)[:2] < AMPERE:
            return [
                f"hardware-compatible (Ampere+) plan, but this GPU {runtime.gpu_name} has "
                f"compute capability {here_cc} < 8.0"
            ]
        return []
    if built_cc != here_cc:
        return [
            f"built on {built_name} (compute capability {built_cc}), this GPU is "
            f"{runtime.gpu_name} ({here_cc}); rebuild on this GPU, or build with "
            "--hardware-compatible (Ampere and newer)"
        ]
    if level == "none" and built_name != runtime.gpu_name:
        return [
            f"built on {built_name}, this GPU is {runtime.gpu_name} (same compute capability "
            f"{here_cc}, but a plan is tuned for and tied to the GPU model that built it); "
            "rebuild on this GPU, or build with --hardware-compatible"
        ]
    return []


def engine_problems(meta: dict, runtime: TrtRuntime) -> list[str]:
    """Every reason this engine's plans must not be deserialised here (empty: go ahead)."""
    if not isinstance(meta, dict):
        return ["engine metadata is not a JSON object"]
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        return [f"engine metadata lacks {missing}"]
    if meta["format"] != ENGINE_FORMAT:
        return [f"engine metadata format {meta['format']!r} is not {ENGINE_FORMAT!r}"]
    return version_problems(meta, runtime.tensorrt_version) + hardware_problems(meta, runtime)


def plan_problems(meta: dict, manifest_files: dict) -> list[str]:
    """Plans named by the metadata must be the files the manifest verified (same sha256)."""
    problems = []
    for name, entry in meta["plans"].items():
        listed = manifest_files.get(entry.get("file", ""))
        if listed is None:
            problems.append(f"plan {name}: {entry.get('file')!r} is not in the manifest")
        elif listed.get("sha256") != entry.get("sha256"):
            problems.append(f"plan {name}: sha256 differs between engine.json and the manifest")
    return problems
