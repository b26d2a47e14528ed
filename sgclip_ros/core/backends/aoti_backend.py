"""AOTInductor backend: ``.pt2`` packages from ``torch.export`` + ``aoti_compile_and_package``.

A package holds native code compiled for one device type (and, for CUDA, one GPU architecture)
against one PyTorch build, so the manifest's device, torch version and compute capability are
checked before any package is loaded.
"""

from __future__ import annotations

import torch

from sgclip_ros.core.backends.artefacts import Artefacts, BackendUnavailable
from sgclip_ros.core.backends.base import CompiledBackend
from sgclip_ros.core.io_spec import AOTI_MAX_BATCH, EncoderSpec


def torch_release(version: str) -> str:
    """``2.14.1+cu130`` -> ``2.14.1``."""
    return version.split("+", 1)[0]


def runtime_info(device: str) -> dict:
    """What an AOTI package must match on this machine."""
    info = {"device": "cuda" if device.startswith("cuda") else "cpu",
            "torch_version": torch.__version__}
    if info["device"] == "cuda" and torch.cuda.is_available():
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        info["compute_capability"] = f"{major}.{minor}"
        info["gpu_name"] = torch.cuda.get_device_name(index)
    return info


def aoti_problems(manifest: dict, runtime: dict) -> list[str]:
    """Why the packages described by ``manifest`` cannot run here (empty: they can)."""
    problems = []
    if manifest.get("device") != runtime["device"]:
        problems.append(f"compiled for {manifest.get('device')!r}, running on {runtime['device']}")
    built, running = str(manifest.get("torch_version")), runtime["torch_version"]
    if torch_release(built) != torch_release(running):
        problems.append(f"compiled with torch {built}, running torch {running}; re-export")
    if runtime["device"] == "cuda":
        if "compute_capability" not in runtime:
            problems.append("no CUDA device is available")
        elif manifest.get("compute_capability") != runtime["compute_capability"]:
            problems.append(
                f"compiled for compute capability {manifest.get('compute_capability')} "
                f"({manifest.get('gpu_name')}), this GPU is {runtime['compute_capability']} "
                f"({runtime.get('gpu_name')}); re-export on this GPU"
            )
    return problems


class AotiBackend(CompiledBackend):
    """Exported encoders compiled ahead of time by TorchInductor."""

    name = "aoti"

    def __init__(self, artefacts: Artefacts, device: str = "cpu"):
        super().__init__(artefacts, device)
        problems = aoti_problems(artefacts.manifest, runtime_info(device))
        if problems:
            raise BackendUnavailable(f"{artefacts.directory}: " + "; ".join(problems))
        self._torch_device = torch.device(device)
        self._batch = int(artefacts.manifest.get("max_batch", AOTI_MAX_BATCH))
        self._models = {}
        for spec in self._specs.values():
            path = artefacts.path(spec)
            try:
                kwargs = {} if self._torch_device.type == "cpu" else {
                    "device_index": self._torch_device.index or 0}
                self._models[spec.name] = torch._inductor.aoti_load_package(str(path), **kwargs)
            except Exception as exc:  # the loader raises RuntimeError and friends
                raise BackendUnavailable(f"cannot load AOTInductor package {path}: {exc}") from exc

    def max_batch(self, spec: EncoderSpec) -> int | None:
        return self._batch

    @torch.inference_mode()
    def _run(self, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        out = self._models[spec.name](x.to(self._torch_device).contiguous())
        return out[0] if isinstance(out, (list, tuple)) else out
