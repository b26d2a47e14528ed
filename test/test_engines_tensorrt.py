"""TensorRT without TensorRT: the import error, the metadata rules, and the build/load flow.

TensorRT cannot be installed here. The real module's absence is tested as is; the build and
load code paths are driven by a small stand-in for the TensorRT 10 Python API (``FakeTrt``)
that records what was called, so the order of checks (metadata BEFORE deserialising) and the
status checks are exercised on real engine folders written by training.build_engine.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import types

import pytest
import torch

from sgclip_ros.core import backend_select
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backends.artefacts import BackendUnavailable, load_artefacts
from sgclip_ros.core.backends.tensorrt_backend import TensorRTBackend
from sgclip_ros.core.backends.tensorrt_meta import (
    ENGINE_FORMAT,
    TensorRTUnavailable,
    TrtRuntime,
    engine_problems,
    import_tensorrt,
    parse_version,
    plan_problems,
)
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import model_id, verify_model_dir, write_manifest
from training import build_engine, export

H200 = {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "cuda_version": "12.8"}


class FakeTrt(types.ModuleType):
    """The parts of the TensorRT 10 Python API the project uses; records every call."""

    def __init__(self, version="10.3.0", parse_ok=True, plan_ok=True, engine_ok=True):
        super().__init__("tensorrt")
        self.__version__ = version
        self.calls: list[str] = []
        self.parse_ok, self.plan_ok, self.engine_ok = parse_ok, plan_ok, engine_ok
        ns = types.SimpleNamespace
        self.float32, self.float16, self.int32, self.int64, self.bfloat16 = (
            "f32", "f16", "i32", "i64", "bf16")
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        self.TensorIOMode = ns(INPUT="input", OUTPUT="output")
        self.BuilderFlag = ns(FP16="FP16", BF16="BF16", VERSION_COMPATIBLE="VERSION_COMPATIBLE")
        self.MemoryPoolType = ns(WORKSPACE="WORKSPACE")
        self.HardwareCompatibilityLevel = ns(AMPERE_PLUS="AMPERE_PLUS")
        self.runtimes: list = []

    # -- builder side ----------------------------------------------------------------------
    def Builder(self, logger):  # noqa: N802 (TensorRT's names)
        trt = self

        class Config:
            def __init__(self):
                self.flags, self.hardware_compatibility_level = [], None

            def set_memory_pool_limit(self, pool, size):
                trt.calls.append(f"workspace {size}")

            def set_flag(self, flag):
                self.flags.append(flag)
                trt.calls.append(f"flag {flag}")

            def create_timing_cache(self, data):
                trt.calls.append(f"timing cache in {len(data)}")
                return types.SimpleNamespace(serialize=lambda: b"CACHE")

            def set_timing_cache(self, cache, ignore_mismatch):
                return True

            def get_timing_cache(self):
                return types.SimpleNamespace(serialize=lambda: b"CACHE")

            def add_optimization_profile(self, profile):
                trt.calls.append(f"profile {profile.shapes}")
                return 0

        class Profile:
            shapes: dict = {}

            def set_shape(self, name, lo, opt, hi):
                self.shapes = {name: (list(lo), list(opt), list(hi))}

        class Builder:
            def create_network(self, flags):
                trt.calls.append(f"create_network({flags})")
                return trt._network

            def create_builder_config(self):
                trt.config = Config()
                return trt.config

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                trt.calls.append("build")
                return b"PLAN " + network.input_name.encode() if trt.plan_ok else None

        return Builder()

    def OnnxParser(self, network, logger):  # noqa: N802
        trt = self

        class Parser:
            num_errors = 0 if trt.parse_ok else 2

            def parse_from_file(self, path):
                name = "pixels" if "image" in path else "tokens"
                network.input_name = name
                network.get_input = lambda i: types.SimpleNamespace(name=name)
                return trt.parse_ok

            def get_error(self, i):
                return f"In node {i} (importModel): unsupported operator Frobnicate{i}"

        return Parser()

    @property
    def _network(self):
        return types.SimpleNamespace(num_inputs=1, input_name="", get_input=None)

    # -- runtime side ----------------------------------------------------------------------
    def Runtime(self, logger):  # noqa: N802
        trt = self

        class Runtime:
            engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data):
                trt.calls.append("deserialize")
                return FakeEngine(data) if trt.engine_ok else None

        runtime = Runtime()
        self.runtimes.append(runtime)
        return runtime


class FakeEngine:
    def __init__(self, data: bytes):
        self.input = data.decode().split()[-1]
        self.num_io_tensors = 2

    def get_tensor_name(self, i):
        return [self.input, "embeddings"][i]

    def get_tensor_mode(self, name):
        return "input" if name == self.input else "output"

    def get_tensor_dtype(self, name):
        return "i64" if name == "tokens" else "f32"

    def get_tensor_profile_shape(self, name, index):
        return ((1,), (8,), (16,))

    def create_execution_context(self):
        return object()


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("trt")
    config = dataclasses.replace(load_model_config("sgclip-tiny"), towers=1)
    save_model(build_model(config, seed=0), base / "ck")
    write_manifest(base / "ck", {"model": "tiny1"})
    assert export.main(["--checkpoint", str(base / "ck"), "--out", str(base / "root" / "m"),
                        "--formats", "onnx", "--concepts", "config/concepts/shapes.yaml"]) == 0
    return base / "root"


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch.cuda reports an H200 (nothing runs on it) and build_engine sees the same GPU."""
    gpu = dict(H200)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: gpu["gpu_name"])
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda i=0: tuple(int(x) for x in gpu["compute_capability"].split(".")))
    monkeypatch.setattr(torch.cuda, "device", lambda i: contextlib.nullcontext())
    monkeypatch.setattr(build_engine, "gpu_info", lambda: dict(H200))
    return gpu


def _build(monkeypatch, onnx_root, tmp_path, trt, *flags) -> int:
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return build_engine.main(["--onnx", str(onnx_root / "m" / "onnx"), "--max-batch", "16",
                              "--timing-cache", str(tmp_path / "timing.cache"), "--no-verify",
                              *flags])


def _artefacts(onnx_root):
    config = dataclasses.replace(load_model_config("sgclip-tiny"), towers=1)
    mid = model_id(verify_model_dir(onnx_root, "m"))
    return load_artefacts(onnx_root, "m", "tensorrt", "tensorrt", config, mid)


def test_the_import_error_says_how_to_install_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(TensorRTUnavailable) as info:
        import_tensorrt()
    message = str(info.value)
    assert "TensorRT is not installed" in message and "JetPack" in message
    assert "pypi.nvidia.com" in message and "training.build_engine" in message


def test_build_engine_without_tensorrt_exits_3_with_the_message(onnx_root):
    result = subprocess.run(
        [sys.executable, "-m", "training.build_engine", "--onnx", str(onnx_root / "m" / "onnx")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 3
    assert "TensorRT is not installed" in result.stderr and "JetPack" in result.stderr
    assert not (onnx_root / "m" / "tensorrt").exists()


def _meta(**changes) -> dict:
    meta = {"format": ENGINE_FORMAT, "tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H200",
            "compute_capability": "9.0", "precision": "fp16", "hardware_compatibility": "none",
            "version_compatible": False, "profiles": {}, "plans": {}}
    meta.update(changes)
    return meta


HERE = TrtRuntime("10.3.0", "NVIDIA H200", "9.0")


@pytest.mark.parametrize("meta,runtime,expected", [
    (_meta(), HERE, None),
    (_meta(tensorrt_version="10.3.0.26"), TrtRuntime("10.3.0.26", "NVIDIA H200", "9.0"), None),
    (_meta(tensorrt_version="10.2.0"), HERE, "built with TensorRT 10.2.0, running TensorRT 10.3.0"),
    (_meta(tensorrt_version="10.2.0", version_compatible=True), HERE, None),
    (_meta(tensorrt_version="10.4.0", version_compatible=True), HERE, "cannot run on the older"),
    (_meta(tensorrt_version="8.5.3", version_compatible=True), HERE, "need TensorRT >= 8.6"),
    (_meta(compute_capability="8.0", gpu_name="NVIDIA A100-SXM4-80GB"), HERE,
     "built on NVIDIA A100-SXM4-80GB (compute capability 8.0), this GPU is NVIDIA H200 (9.0)"),
    (_meta(gpu_name="NVIDIA H100 80GB HBM3"), HERE, "same compute capability 9.0"),
    (_meta(gpu_name="NVIDIA H100 80GB HBM3", hardware_compatibility="same_compute_capability"),
     HERE, None),
    (_meta(compute_capability="8.6", gpu_name="NVIDIA RTX A6000",
           hardware_compatibility="ampere_plus"), HERE, None),
    (_meta(hardware_compatibility="ampere_plus"), TrtRuntime("10.3.0", "Tesla T4", "7.5"),
     "compute capability 7.5 < 8.0"),
    (_meta(format="something-else"), HERE, "is not 'sgclip-tensorrt-engine'"),
    ({"format": ENGINE_FORMAT}, HERE, "engine metadata lacks"),
])
def test_engine_metadata_rules(meta, runtime, expected):
    problems = engine_problems(meta, runtime)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_versions_and_plan_hashes():
    assert parse_version("10.3.0.26") == (10, 3, 0, 26) and parse_version("10.8.0a1") == (10, 8, 0)
    meta = _meta(plans={"tower0_image": {"file": "tower0_image.plan", "sha256": "a" * 64}})
    assert plan_problems(meta, {"tower0_image.plan": {"sha256": "a" * 64}}) == []
    assert "differs" in plan_problems(meta, {"tower0_image.plan": {"sha256": "b" * 64}})[0]
    assert "not in the manifest" in plan_problems(meta, {})[0]


def test_build_engine_writes_plans_metadata_and_manifest(onnx_root, tmp_path, monkeypatch,
                                                         fake_gpu):
    trt = FakeTrt()
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--fp16", "--version-compatible") == 0
    assert "create_network(0)" in trt.calls and "flag FP16" in trt.calls
    assert "flag VERSION_COMPATIBLE" in trt.calls and (tmp_path / "timing.cache").is_file()
    assert "profile {'pixels': ([1, 3, 32, 32], [8, 3, 32, 32], [16, 3, 32, 32])}" in trt.calls
    manifest = verify_model_dir(onnx_root, "m/tensorrt")
    assert manifest["format"] == "sgclip-tensorrt" and manifest["precision"] == "fp16"
    assert {"tower0_image.plan", "tower0_text.plan", "engine.json",
            "text_embeddings.safetensors", "probe.safetensors"} == set(manifest["files"])
    meta = json.loads((onnx_root / "m" / "tensorrt" / "engine.json").read_text())
    assert meta["tensorrt_version"] == "10.3.0" and meta["gpu_name"] == "NVIDIA H200"
    assert meta["compute_capability"] == "9.0" and meta["version_compatible"] is True
    assert meta["hardware_compatibility"] == "none" and meta["max_batch"] == 16
    assert meta["plans"]["tower0_text"]["sha256"] == manifest["files"]["tower0_text.plan"]["sha256"]
    assert meta["profiles"]["tower0_text"]["tokens"]["max"] == [16, 77]


def test_the_runtime_checks_metadata_before_deserialising(onnx_root, tmp_path, monkeypatch,
                                                          fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(), "--fp16") == 0
    artefacts = _artefacts(onnx_root)
    newer = FakeTrt(version="10.4.0")
    monkeypatch.setitem(sys.modules, "tensorrt", newer)
    with pytest.raises(BackendUnavailable, match="built with TensorRT 10.3.0, running"):
        TensorRTBackend(artefacts, "cuda")
    assert "deserialize" not in newer.calls
    fake_gpu.update(gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    same = FakeTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", same)
    with pytest.raises(BackendUnavailable, match="rebuild on this GPU"):
        TensorRTBackend(artefacts, "cuda")
    assert "deserialize" not in same.calls
    fake_gpu.update(H200)
    backend = TensorRTBackend(artefacts, "cuda")
    assert same.calls.count("deserialize") == 2
    assert backend.max_batch(backend._specs[(0, "image")]) == 16
    assert same.runtimes[-1].engine_host_code_allowed is False


def test_a_failed_deserialisation_is_reported_not_crashed(onnx_root, tmp_path, monkeypatch,
                                                         fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(), "--version-compatible") == 0
    broken = FakeTrt(version="10.5.0", engine_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", broken)
    with pytest.raises(BackendUnavailable, match="could not deserialise .*tower0_image.plan"):
        TensorRTBackend(_artefacts(onnx_root), "cuda")
    assert broken.runtimes[-1].engine_host_code_allowed is True  # version-compatible plan


def test_parser_errors_are_printed_and_the_build_exits_1(onnx_root, tmp_path, monkeypatch,
                                                         fake_gpu, capsys):
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(parse_ok=False)) == 1
    err = capsys.readouterr().err
    assert "unsupported operator Frobnicate0" in err and "Frobnicate1" in err
    assert "ONNX parser reported 2 error(s)" in err
    assert not list((onnx_root / "m").glob(".*partial"))


def test_a_null_plan_exits_1(onnx_root, tmp_path, monkeypatch, fake_gpu, capsys):
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(plan_ok=False)) == 1
    assert "build_serialized_network failed" in capsys.readouterr().err


def test_build_engine_replaces_only_an_out_folder_it_made(onnx_root, tmp_path, monkeypatch,
                                                         fake_gpu, capsys):
    mine = tmp_path / "models" / "sgclip"  # a user's model, given as --out by mistake
    mine.mkdir(parents=True)
    (mine / "model.safetensors").write_bytes(b"my weights")
    trt = FakeTrt()
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--out", str(mine)) == 2
    assert f"{mine}: not empty and not made by this tool" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["model.safetensors"]
    assert (mine / "model.safetensors").read_bytes() == b"my weights"
    assert trt.calls == [] and not list(mine.parent.glob(".*partial"))  # refused up front
    out = tmp_path / "engines"
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(), "--out", str(out)) == 0
    (out / "stale.plan").write_bytes(b"from the first build")
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt(), "--out", str(out)) == 0
    assert (out / build_engine.MARKER).is_file() and not (out / "stale.plan").exists()
    assert "engine.json" in verify_model_dir(tmp_path, "engines")["files"]


def test_selection_reports_why_an_engine_was_not_used(onnx_root, tmp_path, monkeypatch, fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, FakeTrt()) == 0
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTrt(version="10.7.0"))
    monkeypatch.setitem(backend_select.LOADERS, "torch", lambda ctx: TorchBackend(
        build_model(ctx.config, seed=0), ctx.model_id, "cpu"))
    choice = backend_select.load_backend("auto", str(onnx_root), "m", "cuda")
    assert choice.backend.name == "torch"
    assert choice.fallbacks[0].startswith("tensorrt unavailable: ")
    assert "built with TensorRT 10.3.0, running TensorRT 10.7.0" in choice.fallbacks[0]
