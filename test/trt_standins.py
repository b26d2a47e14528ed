"""Stand-ins for the TensorRT 10.x and 11.x Python modules, for machines without TensorRT.

``tensorrt_standin("10.3.0")`` and ``tensorrt_standin("11.4.0")`` each expose the documented
Python API of ONE major version, limited to what sgclip_ros touches (training.build_engine and
sgclip_ros.core.backends.tensorrt_backend) plus, on 10.x, the weak-typing API that 11.x removed,
so that code written for 10.x alone runs on the 10.x stand-in and fails on the 11.x one. A name
the real module lacks is missing here too: ``tensorrt_standin("11.4.0").BuilderFlag.FP16`` raises
AttributeError, as the real 11.x module does.

What each version has (NVIDIA's documentation, read for this module; TensorRT itself was not run):
- both: ``Logger``, ``Builder(logger)`` with ``create_network(flags=0)`` (bound to
  ``createNetworkV2``, default 0), ``create_builder_config``, ``create_optimization_profile``,
  ``build_serialized_network``; ``OnnxParser.parse_from_file/num_errors/get_error``;
  ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)``, ``set_flag``,
  ``hardware_compatibility_level = HardwareCompatibilityLevel.AMPERE_PLUS``,
  ``create_timing_cache/set_timing_cache(cache, ignore_mismatch)/get_timing_cache``,
  ``add_optimization_profile``; ``BuilderFlag.VERSION_COMPATIBLE``; ``Runtime`` with
  ``engine_host_code_allowed`` and ``deserialize_cuda_engine``; the name-based tensor API and
  ``execute_async_v3``; the dtypes ``float32 float16 bfloat16 int32 int64``.
- 10.x only: ``BuilderFlag.FP16, BF16, INT8, FP8, OBEY_PRECISION_CONSTRAINTS,
  PREFER_PRECISION_CONSTRAINTS, DIRECT_IO``, ``Builder.platform_has_tf32 / platform_has_fast_fp16 /
  platform_has_fast_int8``, ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (deprecated, ignored)
  next to ``STRONGLY_TYPED`` (10.x Python API reference, Builder and IBuilderConfig pages).
- 11.x: all of the 10.x-only names above are gone ("Migrating from TensorRT 10.x to 11.x",
  "Removed Python APIs and Replacements"; the 11.0 Builder page lists no platform_has_* query);
  ``NetworkDefinitionCreationFlag`` keeps ``STRONGLY_TYPED``, "deprecated in TensorRT 11.0 ...
  retained for API compatibility but is ignored": every network is strongly typed.
Enum VALUES are not relied on by the code under test; the 10.x ones follow NvInfer.h.

Nothing is compiled: the ONNX parser reads the real graph's I/O names, types and shapes with the
``onnx`` package, and a "plan" is JSON recording what the build asked for (strong typing, weak
precision flags, profiles, compatibility), so the tests can check both sides of the flow. Every
call of interest is appended to ``module.calls``.
"""
from __future__ import annotations

import enum
import json
import types

import onnx

STANDIN_VERSIONS = ("10.3.0", "11.4.0")  # JetPack 6.1/6.2's TensorRT, and today's pip wheel


class DataType(enum.IntEnum):
    """tensorrt.DataType (same members on 10.x and 11.x for what is used here)."""

    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    BF16 = 7
    INT64 = 8


_ONNX_TO_TRT = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
                onnx.TensorProto.BFLOAT16: DataType.BF16, onnx.TensorProto.INT32: DataType.INT32,
                onnx.TensorProto.INT64: DataType.INT64}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class BuilderFlag10(enum.IntEnum):
    """tensorrt.BuilderFlag on 10.x (the members relevant here)."""

    FP16 = 0
    INT8 = 1
    TF32 = 6
    OBEY_PRECISION_CONSTRAINTS = 9
    PREFER_PRECISION_CONSTRAINTS = 10
    DIRECT_IO = 11
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14
    FP8 = 15
    BF16 = 17


class BuilderFlag11(enum.IntEnum):
    """tensorrt.BuilderFlag on 11.x: the weak-typing precision flags are removed."""

    TF32 = 6
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14


class NetworkDefinitionCreationFlag10(enum.IntEnum):
    EXPLICIT_BATCH = 0  # deprecated in 10.0: networks are always explicit batch
    STRONGLY_TYPED = 1
    PREFER_AOT_PYTHON_PLUGINS = 2
    PREFER_JIT_PYTHON_PLUGINS = 3


class NetworkDefinitionCreationFlag11(enum.IntEnum):
    STRONGLY_TYPED = 0  # deprecated in 11.0 and ignored: strong typing is always on


WEAK_PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS",
                        "PREFER_PRECISION_CONSTRAINTS")


def _major(version: str) -> int:
    return int(version.split(".")[0])


class Logger:
    """tensorrt.Logger(min_severity)."""

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity=WARNING):
        self.min_severity = min_severity


class TimingCache:
    """ITimingCache: what was loaded, serialised back (grown by one entry per build)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data + b"+entry"


class OptimizationProfile:
    """IOptimizationProfile.set_shape(input, min, opt, max)."""

    def __init__(self):
        self.shapes: dict = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 (TensorRT's parameter names)
        self.shapes[name] = [list(min), list(opt), list(max)]


class Tensor:
    """ITensor: name, dtype, shape (-1 for dynamic axes)."""

    def __init__(self, name: str, dtype: DataType, shape: tuple):
        self.name, self.dtype, self.shape = name, dtype, shape


class Network:
    """INetworkDefinition as the ONNX parser fills it; strong typing fixed at creation."""

    def __init__(self, strongly_typed: bool, flags: int):
        self.strongly_typed, self.flags = strongly_typed, flags
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> Tensor:
        return self.inputs[index]

    def get_output(self, index: int) -> Tensor:
        return self.outputs[index]


def _tensors(values) -> list[Tensor]:
    """ONNX graph inputs/outputs as network tensors (symbolic dims become -1)."""
    out = []
    for value in values:
        kind = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
        out.append(Tensor(value.name, _ONNX_TO_TRT[kind.elem_type], shape))
    return out


class StandInTensorRT(types.ModuleType):
    """Attributes shared by both versions; the per-version names are set by tensorrt_standin."""

    def __init__(self, version: str, parse_ok=True, plan_ok=True, engine_ok=True):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[str] = []
        self.parse_ok, self.plan_ok, self.engine_ok = parse_ok, plan_ok, engine_ok
        self.runtimes: list = []
        self.configs: list = []
        self.Logger = Logger
        self.DataType = DataType
        self.float32, self.float16, self.bfloat16 = DataType.FLOAT, DataType.HALF, DataType.BF16
        self.int32, self.int64 = DataType.INT32, DataType.INT64
        self.TensorIOMode = TensorIOMode
        self.MemoryPoolType = MemoryPoolType
        self.HardwareCompatibilityLevel = HardwareCompatibilityLevel

    def OnnxParser(self, network, logger):  # noqa: N802 (TensorRT's names)
        """nvonnxparser: reads the real ONNX file's I/O into ``network``."""
        return _Parser(self, network)

    def Runtime(self, logger):  # noqa: N802
        runtime = _Runtime(self)
        self.runtimes.append(runtime)
        return runtime


class _Parser:
    def __init__(self, trt: StandInTensorRT, network: Network):
        self.trt, self.network = trt, network
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        self.trt.calls.append(f"parse {path.rsplit('/', 1)[-1]}")
        if not self.trt.parse_ok:
            self.num_errors = 2
            return False
        graph = onnx.load(path, load_external_data=False).graph
        self.network.inputs, self.network.outputs = _tensors(graph.input), _tensors(graph.output)
        return True

    def get_error(self, index: int) -> str:
        return f"In node {index} (importModel): unsupported operator Frobnicate{index}"


class _Config:
    """IBuilderConfig; ``set_flag`` only takes this version's BuilderFlag members."""

    def __init__(self, trt: StandInTensorRT):
        self.trt = trt
        self.flags: list[str] = []
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
        self.profiles: list[OptimizationProfile] = []
        self.cache: TimingCache | None = None

    def set_memory_pool_limit(self, pool, pool_size):
        self.trt.calls.append(f"workspace {pool_size}")

    def set_flag(self, flag):
        if not isinstance(flag, self.trt.BuilderFlag):  # pybind: a TypeError, as here
            raise TypeError(f"set_flag(): incompatible argument {flag!r}")
        self.flags.append(flag.name)
        self.trt.calls.append(f"flag {flag.name}")

    def get_flag(self, flag) -> bool:
        return flag.name in self.flags

    def create_timing_cache(self, data):
        self.trt.calls.append(f"timing cache in {len(data)}")
        return TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache

    def add_optimization_profile(self, profile) -> int:
        self.trt.calls.append(f"profile {profile.shapes}")
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _Builder:
    """IBuilder, the API both versions share (``trt`` is set on the per-module subclass)."""

    trt: StandInTensorRT

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> Network:
        self.trt.calls.append(f"create_network({flags})")
        bit = 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        strongly_typed = _major(self.trt.__version__) >= 11 or bool(flags & bit)
        return Network(strongly_typed, flags)

    def create_builder_config(self) -> _Config:
        config = _Config(self.trt)
        self.trt.configs.append(config)
        return config

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: Network, config: _Config):
        """A JSON "plan" of what was asked for; None like the real builder on failure."""
        self.trt.calls.append("build")
        if not self.trt.plan_ok:
            return None
        plan = {
            "standin_tensorrt": self.trt.__version__,
            "strongly_typed": network.strongly_typed,
            "weak_precision_flags": [f for f in config.flags if f in WEAK_PRECISION_FLAGS],
            "version_compatible": "VERSION_COMPATIBLE" in config.flags,
            "hardware_compatibility_level": config.hardware_compatibility_level.name,
            "io": [[t.name, int(t.dtype), list(t.shape), "input"] for t in network.inputs]
            + [[t.name, int(t.dtype), list(t.shape), "output"] for t in network.outputs],
            "profiles": [p.shapes for p in config.profiles],
        }
        return json.dumps(plan).encode()


class _Builder10(_Builder):
    """IBuilder on 10.x: still has the platform capability queries 11.x removed."""

    platform_has_tf32 = True
    platform_has_fast_fp16 = True
    platform_has_fast_int8 = True


class _Runtime:
    """IRuntime: deserialises only plans this stand-in version may run."""

    def __init__(self, trt: StandInTensorRT):
        self.trt = trt
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes):
        self.trt.calls.append("deserialize")
        if not self.trt.engine_ok:
            return None
        plan = json.loads(bytes(data).decode())
        same = plan["standin_tensorrt"] == self.trt.__version__
        if not same and not (plan["version_compatible"] and self.engine_host_code_allowed):
            return None  # the real runtime logs "version tag does not match" and returns null
        return _Engine(plan)


class _Engine:
    """ICudaEngine: the name-based tensor API."""

    def __init__(self, plan: dict):
        self.plan = plan
        self._io = {name: (DataType(dtype), shape, mode) for name, dtype, shape, mode in plan["io"]}
        self.num_io_tensors = len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return list(self._io)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        if name not in self._io:
            return TensorIOMode.NONE
        return TensorIOMode.INPUT if self._io[name][2] == "input" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._io[name][0]

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return tuple(tuple(s) for s in self.plan["profiles"][profile_index][name])

    def create_execution_context(self):
        return _Context(self)


class _Context:
    """IExecutionContext: shapes and addresses recorded, execution always succeeds."""

    def __init__(self, engine: _Engine):
        self.engine = engine
        self.batch = None
        self.addresses: dict = {}

    def set_input_shape(self, name: str, shape) -> bool:
        self.batch = shape[0]
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        shape = self.engine._io[name][1]
        return (self.batch, *shape[1:])

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        return True


def tensorrt_standin(version: str, **options) -> StandInTensorRT:
    """A stand-in ``tensorrt`` module for ``version`` (10.x or 11.x); see the module doc."""
    trt = StandInTensorRT(version, **options)
    major = _major(version)
    if major == 10:
        trt.BuilderFlag = BuilderFlag10
        trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag10
        base = _Builder10
    elif major == 11:
        trt.BuilderFlag = BuilderFlag11
        trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag11
        base = _Builder
    else:
        raise ValueError(f"no stand-in for TensorRT {version}")
    # A class, as tensorrt.Builder is: its properties can be probed on the class itself.
    trt.Builder = type("Builder", (base,), {"trt": trt})
    return trt
