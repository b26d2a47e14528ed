"""ONNX Runtime backends: one InferenceSession per exported encoder, CPU or CUDA provider;
int8 graphs (``onnx_int8/``) on the CPU provider only.

Sessions use every graph optimisation (``ORT_ENABLE_ALL``) and a configurable number of intra-op
threads. ONNX Runtime silently falls back to the CPU provider when the CUDA provider cannot
load; this backend checks the providers each session really got and refuses instead.
"""

from __future__ import annotations

import numpy as np
import torch

from sgclip_ros.core.backends.artefacts import PROBE_FILE, Artefacts, BackendUnavailable
from sgclip_ros.core.backends.base import CompiledBackend
from sgclip_ros.core.io_spec import EncoderSpec

CPU_EP, CUDA_EP = "CPUExecutionProvider", "CUDAExecutionProvider"
# onnxruntime 1.32's CPU provider crashes (SIGSEGV, while creating the session) in its NCHWc
# layout transformer on the fp16 CLIP graphs of training.onnx_precision; that transformer only
# speeds up convolutions, so it is left out for reduced-precision graphs.
REDUCED_PRECISION_DISABLED_OPTIMIZERS = ["NchwcTransformer"]


def disabled_optimizers(precision: str) -> list[str] | None:
    """Graph optimizers left out when loading graphs of ``precision``."""
    return REDUCED_PRECISION_DISABLED_OPTIMIZERS if precision in ("fp16", "bf16") else None
_NP_DTYPES = {"float32": np.float32, "int64": np.int64}


def import_onnxruntime():
    """The onnxruntime module, or BackendUnavailable saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            f"onnxruntime is not importable ({exc}); pip install onnxruntime "
            "(or onnxruntime-gpu for the CUDA provider)"
        ) from exc
    return onnxruntime


def _device_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


class OnnxRuntimeBackend(CompiledBackend):
    """Exported ONNX encoders run by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, artefacts: Artefacts, device: str = "cpu", intra_op_threads: int = 0):
        super().__init__(artefacts, device)
        ort = import_onnxruntime()
        self.device_type = "cuda" if device.startswith("cuda") else "cpu"
        self.providers = self._providers(ort, device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(intra_op_threads)
        # Idle ORT worker threads would otherwise spin and steal the cores that cropping and
        # preprocessing (torch, same process) need between two encoder calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = {}
        disabled = disabled_optimizers(artefacts.precision)
        for spec in self._specs.values():
            path = artefacts.path(spec)
            try:
                session = ort.InferenceSession(str(path), options, providers=self.providers,
                                               disabled_optimizers=disabled)
            except Exception as exc:  # onnxruntime raises its own exception types
                raise BackendUnavailable(f"onnxruntime cannot load {path}: {exc}") from exc
            self._check_session(session, spec, path)
            self._sessions[spec.name] = session

    @staticmethod
    def _providers(ort, device: str) -> list:
        if not device.startswith("cuda"):
            return [CPU_EP]
        available = ort.get_available_providers()
        if CUDA_EP not in available:
            raise BackendUnavailable(
                f"device {device} needs onnxruntime's {CUDA_EP}, but this onnxruntime only has "
                f"{available} (install onnxruntime-gpu matching the CUDA version)"
            )
        return [(CUDA_EP, {"device_id": _device_index(device)}), CPU_EP]

    def _check_session(self, session, spec: EncoderSpec, path) -> None:
        wanted = CUDA_EP if self.device_type == "cuda" else CPU_EP
        got = session.get_providers()
        if not got or got[0] != wanted:
            raise BackendUnavailable(f"onnxruntime gave {path} providers {got}, not {wanted}")
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [spec.input.name] or outputs != [spec.output.name]:
            raise BackendUnavailable(
                f"{path}: inputs {inputs} / outputs {outputs} do not match the I/O spec "
                f"({spec.input.name} -> {spec.output.name})"
            )

    def _run(self, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        session = self._sessions[spec.name]
        if self.device_type == "cpu":
            feed = {spec.input.name: x.detach().cpu().contiguous().numpy()}
            return torch.from_numpy(session.run([spec.output.name], feed)[0])
        return self._run_cuda(session, spec, x)

    def _run_cuda(self, session, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        """I/O binding on torch CUDA buffers: no host round trip for inputs or outputs."""
        index = _device_index(self.device)
        x = x.to(f"cuda:{index}").contiguous()
        out = torch.empty(spec.output.concrete(len(x)), dtype=torch.float32, device=x.device)
        torch.cuda.current_stream(x.device).synchronize()  # ORT runs on its own stream
        binding = session.io_binding()
        binding.bind_input(spec.input.name, "cuda", index, _NP_DTYPES[spec.input.dtype],
                           tuple(x.shape), x.data_ptr())
        binding.bind_output(spec.output.name, "cuda", index, np.float32,
                            tuple(out.shape), out.data_ptr())
        session.run_with_iobinding(binding)
        return out


class OnnxRuntimeInt8Backend(OnnxRuntimeBackend):
    """int8 ONNX graphs (``onnx_int8/``, dynamic quantization) on ONNX Runtime's CPU provider.

    For CPU-only robots. It always checks itself against the export probe after loading
    (``self_check``, min cosine 0.99), whatever ``BackendOptions.self_check`` says: int8
    kernels differ between CPUs, so agreement at export does not carry over to the robot.
    """

    name = "onnxruntime-int8"

    def __init__(self, artefacts: Artefacts, device: str = "cpu", intra_op_threads: int = 0):
        if device.startswith("cuda"):
            raise BackendUnavailable(
                f"int8 graphs run on ONNX Runtime's CPU provider; the device is {device} "
                "(on a GPU use the tensorrt or onnxruntime backend)"
            )
        if artefacts.precision != "int8":
            raise BackendUnavailable(
                f"{artefacts.directory}: precision {artefacts.precision!r}, expected 'int8'"
            )
        if not artefacts.has(PROBE_FILE):  # the self-check is what makes int8 safe to run
            raise BackendUnavailable(
                f"{artefacts.directory}: no {PROBE_FILE} to check the int8 graphs against"
            )
        super().__init__(artefacts, device, intra_op_threads)
