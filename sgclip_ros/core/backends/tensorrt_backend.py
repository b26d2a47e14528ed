"""TensorRT backend (TensorRT 10.x and 11.x Python APIs): one deserialised plan per encoder.

The runtime calls used here (``Runtime``, ``deserialize_cuda_engine``, the name-based tensor API,
``execute_async_v3``, ``engine_host_code_allowed``) are not among the Python APIs NVIDIA lists
as removed in 11.x ("Removed Python APIs and Replacements"); what 11.x removed is build-side
weak typing, which training.build_engine no longer uses. Neither version has run here.

Order of checks, so that nothing is deserialised that might not fit: CUDA device present ->
artefacts verified (sha256 manifest) -> ``import tensorrt`` (10.x or 11.x) -> ``engine.json``
against the running TensorRT version (a plan never crosses 10.x/11.x) and GPU ->
``Runtime.deserialize_cuda_engine`` (None-checked) -> execution
context (None-checked) -> I/O names and dtypes against the I/O spec. Inference binds torch CUDA
tensors with ``set_input_shape`` / ``set_tensor_address`` and runs ``execute_async_v3`` on the
current torch stream.
"""

from __future__ import annotations

import json

import torch

from sgclip_ros.core.backends.artefacts import ENGINE_METADATA, Artefacts, BackendUnavailable
from sgclip_ros.core.backends.base import CompiledBackend
from sgclip_ros.core.backends.tensorrt_meta import (
    TensorRTUnavailable,
    TrtRuntime,
    engine_problems,
    import_tensorrt,
    plan_problems,
    supported_major,
)
from sgclip_ros.core.io_spec import EncoderSpec
from sgclip_ros.core.model_store import ModelFileError


def cuda_runtime(trt, device_index: int) -> TrtRuntime:
    """The running TensorRT version and this GPU's name and compute capability."""
    major, minor = torch.cuda.get_device_capability(device_index)
    return TrtRuntime(trt.__version__, torch.cuda.get_device_name(device_index),
                      f"{major}.{minor}")


def read_engine_metadata(artefacts: Artefacts) -> dict:
    """``engine.json`` of a verified tensorrt/ folder."""
    if not artefacts.has(ENGINE_METADATA):
        raise ModelFileError(f"{artefacts.directory}: the manifest does not list {ENGINE_METADATA}")
    path = artefacts.directory / ENGINE_METADATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFileError(f"{path}: unreadable engine metadata ({exc})") from exc


_DTYPES = (("float32", torch.float32), ("float16", torch.float16), ("int32", torch.int32),
           ("int64", torch.int64), ("bfloat16", torch.bfloat16))


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {getattr(trt, name): t for name, t in _DTYPES if hasattr(trt, name)}
    if dtype not in table:
        raise BackendUnavailable(f"unsupported TensorRT I/O dtype {dtype}")
    return table[dtype]


class TensorRTBackend(CompiledBackend):
    """Exported encoders compiled to TensorRT plans on this GPU."""

    name = "tensorrt"

    def __init__(self, artefacts: Artefacts, device: str = "cuda"):
        super().__init__(artefacts, device)
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT needs a CUDA device, this backend is on {device}")
        self._device_t = torch.device(device)
        index = self._device_t.index or 0
        try:
            trt = import_tensorrt()
            supported_major(trt)
        except TensorRTUnavailable as exc:
            raise BackendUnavailable(str(exc)) from exc
        self.metadata = read_engine_metadata(artefacts)
        problems = engine_problems(self.metadata, cuda_runtime(trt, index))
        problems += plan_problems(self.metadata, artefacts.manifest["files"])
        if problems:
            raise BackendUnavailable(f"{artefacts.directory}: " + "; ".join(problems))
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.metadata["version_compatible"]:
            # Version-compatible plans embed the lean runtime (host code); this plan's sha256
            # was verified against the manifest just above.
            self._runtime.engine_host_code_allowed = True
        self._engines, self._contexts, self._io = {}, {}, {}
        with torch.cuda.device(index):
            for spec in self._specs.values():
                self._load(spec)

    def _load(self, spec: EncoderSpec) -> None:
        path = self.artefacts.path(spec)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailable(
                f"TensorRT {self._trt.__version__} could not deserialise {path} "
                "(see the TensorRT log above); rebuild it with python -m training.build_engine"
            )
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailable(f"TensorRT could not create an execution context for {path}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if sorted(names) != sorted([spec.input.name, spec.output.name]):
            raise BackendUnavailable(f"{path}: I/O tensors {names} do not match the I/O spec")
        mode = engine.get_tensor_mode(spec.input.name)
        if mode != self._trt.TensorIOMode.INPUT:
            raise BackendUnavailable(f"{path}: {spec.input.name} is not an input")
        max_shape = engine.get_tensor_profile_shape(spec.input.name, 0)[2]
        self._io[spec.name] = (
            _torch_dtype(self._trt, engine.get_tensor_dtype(spec.input.name)),
            _torch_dtype(self._trt, engine.get_tensor_dtype(spec.output.name)),
            int(max_shape[0]),
        )
        self._engines[spec.name], self._contexts[spec.name] = engine, context

    def max_batch(self, spec: EncoderSpec) -> int | None:
        return self._io[spec.name][2]

    @torch.inference_mode()
    def _run(self, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        in_dtype, out_dtype, _ = self._io[spec.name]
        context = self._contexts[spec.name]
        x = x.to(self._device_t, in_dtype).contiguous()
        if not context.set_input_shape(spec.input.name, tuple(x.shape)):
            raise RuntimeError(f"TensorRT rejected input shape {tuple(x.shape)} for {spec.name}")
        shape = tuple(context.get_tensor_shape(spec.output.name))
        out = torch.empty(shape, dtype=out_dtype, device=self._device_t)
        ok = context.set_tensor_address(spec.input.name, x.data_ptr())
        ok = ok and context.set_tensor_address(spec.output.name, out.data_ptr())
        if not ok:
            raise RuntimeError(f"TensorRT rejected the tensor addresses of {spec.name}")
        stream = torch.cuda.current_stream(self._device_t)
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {spec.name}")
        stream.synchronize()
        return out
