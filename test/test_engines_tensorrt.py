"""TensorRT without TensorRT: the import error, the metadata rules, and the build/load flow.

TensorRT cannot be installed here. The real module's absence is tested as is; the build and
load code paths are driven by two stand-ins (test/trt_standins.py), one per supported major
version: TensorRT 10.x (JetPack 6) and 11.x (today's pip wheel, weak typing removed). Each has
only its version's documented API, so a removed name raises AttributeError as it does for real.
Both build strongly typed engines from real ONNX exports and load them back; the order of checks
(metadata BEFORE deserialising) and every status check are exercised on real engine folders.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from trt_standins import STANDIN_VERSIONS, tensorrt_standin

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
from sgclip_ros.core.model_store import (
    ModelFileError,
    model_id,
    verify_model_dir,
    write_manifest,
)
from training import build_engine, export

H200 = {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "cuda_version": "12.8"}


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
HERE_11 = TrtRuntime("11.4.0", "NVIDIA H200", "9.0")


@pytest.mark.parametrize("meta,runtime,expected", [
    (_meta(), HERE, None),
    (_meta(tensorrt_version="10.3.0.26"), TrtRuntime("10.3.0.26", "NVIDIA H200", "9.0"), None),
    (_meta(tensorrt_version="10.2.0"), HERE, "built with TensorRT 10.2.0, running TensorRT 10.3.0"),
    (_meta(tensorrt_version="10.2.0", version_compatible=True), HERE, None),
    (_meta(tensorrt_version="10.4.0", version_compatible=True), HERE, "cannot run on the older"),
    (_meta(tensorrt_version="8.6.1", version_compatible=True), HERE,
     "plan built with TensorRT 8.6.1 (8.x), this machine runs TensorRT 10.3.0 (10.x)"),
    (_meta(tensorrt_version="11.4.0", tensorrt_major=11), HERE_11, None),
    (_meta(tensorrt_version="11.3.0", tensorrt_major=11, version_compatible=True), HERE_11, None),
    # a plan never crosses 10.x/11.x, version-compatible or not, and the sentence names both
    (_meta(tensorrt_major=10), HERE_11,
     "plan built with TensorRT 10.3.0 (10.x), this machine runs TensorRT 11.4.0 (11.x)"),
    (_meta(version_compatible=True), HERE_11, "11.x builds strongly typed networks only"),
    (_meta(tensorrt_version="11.4.0", tensorrt_major=11, version_compatible=True), HERE,
     "plan built with TensorRT 11.4.0 (11.x), this machine runs TensorRT 10.3.0 (10.x): a newer"),
    (_meta(tensorrt_version="11.4.0", tensorrt_major=10), HERE_11, "metadata is inconsistent"),
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


# -- the stand-ins themselves: each has its version's API, and no more --------------------------

REMOVED_IN_11 = ("FP16", "BF16", "INT8", "FP8", "OBEY_PRECISION_CONSTRAINTS",
                 "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO")


def test_the_11_standin_lacks_what_tensorrt_11_removed():
    old, new = tensorrt_standin("10.3.0"), tensorrt_standin("11.4.0")
    for name in REMOVED_IN_11:
        assert getattr(old.BuilderFlag, name) is not None
        with pytest.raises(AttributeError):
            getattr(new.BuilderFlag, name)
    builder10, builder11 = old.Builder(old.Logger()), new.Builder(new.Logger())
    for query in ("platform_has_fast_fp16", "platform_has_fast_int8", "platform_has_tf32"):
        assert getattr(builder10, query) is True
        with pytest.raises(AttributeError):
            getattr(builder11, query)
    assert old.NetworkDefinitionCreationFlag.EXPLICIT_BATCH is not None
    with pytest.raises(AttributeError):
        new.NetworkDefinitionCreationFlag.EXPLICIT_BATCH  # noqa: B018
    for trt in (old, new):  # kept on 11.x: compatibility, timing cache, lean runtime
        assert trt.BuilderFlag.VERSION_COMPATIBLE is not None
        assert trt.HardwareCompatibilityLevel.AMPERE_PLUS is not None
        assert hasattr(trt.Builder(trt.Logger()).create_builder_config(), "create_timing_cache")
        assert hasattr(trt.Runtime(trt.Logger()), "engine_host_code_allowed")


def test_the_gpu_check_records_which_tensorrt_api_is_there():
    from bench.gpu_check import tensorrt_api

    old, new = tensorrt_api(tensorrt_standin("10.3.0")), tensorrt_api(tensorrt_standin("11.4.0"))
    for name in ("BuilderFlag.FP16", "BuilderFlag.BF16", "Builder.platform_has_fast_fp16",
                 "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"):
        assert old[name] is True and new[name] is False, name
    for name in ("BuilderFlag.VERSION_COMPATIBLE", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
                 "HardwareCompatibilityLevel.AMPERE_PLUS"):
        assert old[name] is True and new[name] is True, name


def _old_builder_config(trt, fp16: bool):
    """The precision step of training/build_engine.py before TensorRT 11 support, verbatim."""
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    return network, config


def test_the_old_weak_typing_build_runs_on_10_and_fails_on_11():
    network, config = _old_builder_config(tensorrt_standin("10.3.0"), fp16=True)
    assert not network.strongly_typed and config.flags == ["FP16"]  # weak typing, as before
    with pytest.raises(AttributeError, match="FP16"):
        _old_builder_config(tensorrt_standin("11.4.0"), fp16=True)


# -- build_engine on both stand-ins --------------------------------------------------------------

NEWER = {"10.3.0": "10.4.0", "11.4.0": "11.5.0"}


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_build_engine_writes_strongly_typed_plans_metadata_and_manifest(
        version, onnx_root, tmp_path, monkeypatch, fake_gpu, capsys):
    trt = tensorrt_standin(version)
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--version-compatible",
                  "--hardware-compatible") == 0
    flags = 1 << 1 if version.startswith("10.") else 0  # STRONGLY_TYPED on 10.x, default on 11
    assert trt.calls.count(f"create_network({flags})") == 2
    assert not [c for c in trt.calls if c.startswith("flag ") and "VERSION" not in c]
    assert all(config.flags == ["VERSION_COMPATIBLE"] for config in trt.configs)
    assert all(c.hardware_compatibility_level.name == "AMPERE_PLUS" for c in trt.configs)
    assert (tmp_path / "timing.cache").read_bytes().endswith(b"+entry")
    assert "profile {'pixels': [[1, 3, 32, 32], [8, 3, 32, 32], [16, 3, 32, 32]]}" in trt.calls
    manifest = verify_model_dir(onnx_root, "m/tensorrt")
    assert manifest["format"] == "sgclip-tensorrt" and manifest["precision"] == "fp32"
    assert {"tower0_image.plan", "tower0_text.plan", "engine.json",
            "text_embeddings.safetensors", "probe.safetensors"} == set(manifest["files"])
    meta = json.loads((onnx_root / "m" / "tensorrt" / "engine.json").read_text())
    assert meta["tensorrt_version"] == version and meta["tensorrt_major"] == int(version[:2])
    assert meta["typing"] == "strong" and meta["precision"] == "fp32"
    assert meta["precision_source"] == "onnx graph types"
    assert meta["network_flags"] == (["STRONGLY_TYPED"] if flags else [])
    assert meta["gpu_name"] == "NVIDIA H200" and meta["compute_capability"] == "9.0"
    assert meta["version_compatible"] is True and meta["hardware_compatibility"] == "ampere_plus"
    assert meta["max_batch"] == 16
    assert meta["plans"]["tower0_text"]["sha256"] == manifest["files"]["tower0_text.plan"]["sha256"]
    assert meta["profiles"]["tower0_text"]["tokens"]["max"] == [16, 77]
    plan = json.loads((onnx_root / "m" / "tensorrt" / "tower0_image.plan").read_text())
    assert plan["strongly_typed"] is True and plan["weak_precision_flags"] == []
    assert f"wrote {onnx_root / 'm' / 'tensorrt'} (fp32, strongly typed" in capsys.readouterr().out


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_the_runtime_checks_metadata_before_deserialising(version, onnx_root, tmp_path,
                                                          monkeypatch, fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin(version)) == 0
    artefacts = _artefacts(onnx_root)
    newer = tensorrt_standin(NEWER[version])
    monkeypatch.setitem(sys.modules, "tensorrt", newer)
    with pytest.raises(BackendUnavailable, match=f"built with TensorRT {version}, running"):
        TensorRTBackend(artefacts, "cuda")
    assert "deserialize" not in newer.calls
    fake_gpu.update(gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    same = tensorrt_standin(version)
    monkeypatch.setitem(sys.modules, "tensorrt", same)
    with pytest.raises(BackendUnavailable, match="rebuild on this GPU"):
        TensorRTBackend(artefacts, "cuda")
    assert "deserialize" not in same.calls
    fake_gpu.update(H200)
    backend = TensorRTBackend(artefacts, "cuda")
    assert same.calls.count("deserialize") == 2
    image, text = backend._specs[(0, "image")], backend._specs[(0, "text")]
    assert backend.max_batch(image) == 16 and backend.max_batch(text) == 16
    assert backend._io[image.name][:2] == (torch.float32, torch.float32)  # I/O stays float32
    assert backend._io[text.name][:2] == (torch.int64, torch.float32)
    assert same.runtimes[-1].engine_host_code_allowed is False


@pytest.mark.parametrize("built,running", [("10.3.0", "11.4.0"), ("11.4.0", "10.3.0")])
@pytest.mark.parametrize("compatible", [(), ("--version-compatible",)])
def test_a_plan_never_crosses_tensorrt_10_and_11(built, running, compatible, onnx_root, tmp_path,
                                                 monkeypatch, fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin(built), *compatible) == 0
    other = tensorrt_standin(running)
    monkeypatch.setitem(sys.modules, "tensorrt", other)
    with pytest.raises(BackendUnavailable) as info:
        TensorRTBackend(_artefacts(onnx_root), "cuda")
    assert (f"plan built with TensorRT {built} ({built[:2]}.x), this machine runs TensorRT "
            f"{running} ({running[:2]}.x)") in str(info.value)
    assert "rebuild it on this machine" in str(info.value)
    assert "deserialize" not in other.calls


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_a_failed_deserialisation_is_reported_not_crashed(version, onnx_root, tmp_path,
                                                         monkeypatch, fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin(version),
                  "--version-compatible") == 0
    broken = tensorrt_standin(NEWER[version], engine_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", broken)
    with pytest.raises(BackendUnavailable, match="could not deserialise .*tower0_image.plan"):
        TensorRTBackend(_artefacts(onnx_root), "cuda")
    assert broken.runtimes[-1].engine_host_code_allowed is True  # version-compatible plan


# -- precision comes from the ONNX ----------------------------------------------------------------

def _constant_graph(path, *dtypes) -> None:
    """A one-node ONNX graph whose initializers have ``dtypes`` (and a Cast to the first)."""
    inits = [numpy_helper.from_array(np.zeros(2, dtype=d), f"w{i}") for i, d in enumerate(dtypes)]
    nodes = [helper.make_node("Identity", ["x"], ["y"])]
    if dtypes:
        to = inits[0].data_type
        nodes.append(helper.make_node("Cast", ["w0"], ["c"], to=to))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2])],
                              [helper.make_tensor_value_info("y", 1, [2])], inits)
    onnx.save(helper.make_model(graph), str(path))


def test_graph_precision_reads_the_graphs_own_types(tmp_path):
    cases = {"fp32": (np.float32,), "fp16": (np.float16, np.float32), "plain": ()}
    for name, dtypes in cases.items():
        _constant_graph(tmp_path / f"{name}.onnx", *dtypes)
    assert build_engine.graph_precision(tmp_path / "fp32.onnx") == "fp32"
    assert build_engine.graph_precision(tmp_path / "fp16.onnx") == "fp16"
    assert build_engine.graph_precision(tmp_path / "plain.onnx") == "fp32"
    bf16 = onnx.load(str(tmp_path / "fp32.onnx"))
    bf16.graph.node[1].attribute[0].i = onnx.TensorProto.BFLOAT16  # fp32 weights, bf16 compute
    onnx.save(bf16, str(tmp_path / "bf16.onnx"))
    assert build_engine.graph_precision(tmp_path / "bf16.onnx") == "bf16"
    bf16.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.zeros(2, np.float16), "w0"))
    onnx.save(bf16, str(tmp_path / "mixed.onnx"))
    with pytest.raises(ModelFileError, match="mixes bf16 and fp16"):
        build_engine.graph_precision(tmp_path / "mixed.onnx")


def _to_fp16_weights(path) -> None:
    """Rewrite an fp32 export as fp16 weights cast up in the graph (I/O unchanged)."""
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    casts = []
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            name = init.name
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), f"{name}__fp16"))
            casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name],
                                          to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))


@pytest.fixture(scope="module")
def fp16_onnx(onnx_root):
    """``m/onnx_fp16`` (where training.export --precision fp16 writes): the test export with
    fp16 weights cast up inside the graph, manifest precision fp16. Made here so these tests
    do not depend on the fp16 exporter; the parser stand-in reads only the graph I/O."""
    folder = onnx_root / "m" / "onnx_fp16"
    shutil.copytree(onnx_root / "m" / "onnx", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for path in folder.glob("*.onnx"):
        _to_fp16_weights(path)
    manifest.pop("files")
    write_manifest(folder, {**manifest, "precision": "fp16"})
    return folder


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_an_fp16_onnx_builds_and_loads_an_fp16_engine_with_no_precision_flag(
        version, onnx_root, fp16_onnx, tmp_path, monkeypatch, fake_gpu):
    trt = tensorrt_standin(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    assert build_engine.main(["--onnx", str(fp16_onnx), "--fp16", "--max-batch", "16",
                              "--timing-cache", str(tmp_path / "t.cache"), "--no-verify"]) == 0
    meta = json.loads((onnx_root / "m" / "tensorrt" / "engine.json").read_text())
    assert meta["precision"] == "fp16" and meta["typing"] == "strong"
    assert meta["precision_source"] == "onnx graph types"
    assert all(config.flags == [] for config in trt.configs)  # no FP16 flag, on either version
    backend = TensorRTBackend(_artefacts(onnx_root), "cuda")  # default --out: m/tensorrt
    assert backend.artefacts.precision == "fp16"  # the self-check's fp16 bounds apply
    image = backend._specs[(0, "image")]
    assert backend._io[image.name][:2] == (torch.float32, torch.float32)  # casts are inside


def test_asking_for_another_precision_than_the_onnx_exits_2_before_building(
        onnx_root, tmp_path, monkeypatch, fake_gpu, capsys):
    trt = tensorrt_standin("11.4.0")
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--fp16") == 2
    err = capsys.readouterr().err
    assert "--fp16 asked for fp16 engines, but" in err and "holds fp32 graphs" in err
    assert "python -m training.export --formats onnx --precision fp16" in err
    assert "build" not in trt.calls and not list((onnx_root / "m").glob(".*partial"))


def test_a_manifest_contradicting_the_graphs_exits_2(onnx_root, tmp_path, monkeypatch, fake_gpu,
                                                      capsys):
    folder = tmp_path / "mx" / "onnx"
    shutil.copytree(onnx_root / "m" / "onnx", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("files")
    write_manifest(folder, {**manifest, "precision": "bf16"})
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt_standin("10.3.0"))
    assert build_engine.main(["--onnx", str(folder), "--no-verify"]) == 2
    assert "the manifest says bf16, the graphs are fp32" in capsys.readouterr().err


def test_without_the_onnx_package_the_manifest_precision_is_used(onnx_root, tmp_path, monkeypatch,
                                                                 fake_gpu):
    with monkeypatch.context() as robot:  # a robot without the onnx package
        robot.setitem(sys.modules, "onnx", None)
        assert build_engine.graph_precision(onnx_root / "m" / "onnx" / "tower0_image.onnx") is None
    # (the stand-in's parser reads the graphs with onnx itself, so only the detection is cut)
    monkeypatch.setattr(build_engine, "graph_precision", lambda path: None)
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin("11.4.0")) == 0
    meta = json.loads((onnx_root / "m" / "tensorrt" / "engine.json").read_text())
    assert meta["precision"] == "fp32" and meta["precision_source"].startswith("export manifest")


# -- failures: exit codes as before ---------------------------------------------------------------

@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_parser_errors_are_printed_and_the_build_exits_1(version, onnx_root, tmp_path,
                                                         monkeypatch, fake_gpu, capsys):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin(version, parse_ok=False)) == 1
    err = capsys.readouterr().err
    assert "unsupported operator Frobnicate0" in err and "Frobnicate1" in err
    assert "ONNX parser reported 2 error(s)" in err
    assert not list((onnx_root / "m").glob(".*partial"))


@pytest.mark.parametrize("version", STANDIN_VERSIONS)
def test_a_null_plan_exits_1(version, onnx_root, tmp_path, monkeypatch, fake_gpu, capsys):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin(version, plan_ok=False)) == 1
    assert "build_serialized_network failed" in capsys.readouterr().err


def test_an_api_missing_from_a_tensorrt_exits_1_naming_it(onnx_root, tmp_path, monkeypatch,
                                                          fake_gpu, capsys):
    trt = tensorrt_standin("11.4.0")
    del trt.HardwareCompatibilityLevel  # as if a later release dropped it
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--hardware-compatible") == 1
    err = capsys.readouterr().err
    assert "TensorRT 11.4.0 lacks an API this build uses" in err
    assert "HardwareCompatibilityLevel" in err


@pytest.mark.parametrize("version", ["9.3.0", "12.0.0"])
def test_an_unsupported_tensorrt_major_exits_3(version, onnx_root, tmp_path, monkeypatch,
                                               fake_gpu, capsys):
    trt = tensorrt_standin("11.4.0")
    trt.__version__ = version
    assert _build(monkeypatch, onnx_root, tmp_path, trt) == 3
    assert f"TensorRT {version} is not supported" in capsys.readouterr().err
    assert trt.calls == []


def test_build_engine_replaces_only_an_out_folder_it_made(onnx_root, tmp_path, monkeypatch,
                                                         fake_gpu, capsys):
    mine = tmp_path / "models" / "sgclip"  # a user's model, given as --out by mistake
    mine.mkdir(parents=True)
    (mine / "model.safetensors").write_bytes(b"my weights")
    trt = tensorrt_standin("11.4.0")
    assert _build(monkeypatch, onnx_root, tmp_path, trt, "--out", str(mine)) == 2
    assert f"{mine}: not empty and not made by this tool" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["model.safetensors"]
    assert (mine / "model.safetensors").read_bytes() == b"my weights"
    assert trt.calls == [] and not list(mine.parent.glob(".*partial"))  # refused up front
    out = tmp_path / "engines"
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin("11.4.0"),
                  "--out", str(out)) == 0
    (out / "stale.plan").write_bytes(b"from the first build")
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin("10.3.0"),
                  "--out", str(out)) == 0
    assert (out / build_engine.MARKER).is_file() and not (out / "stale.plan").exists()
    assert "engine.json" in verify_model_dir(tmp_path, "engines")["files"]


def test_selection_reports_why_an_engine_was_not_used(onnx_root, tmp_path, monkeypatch, fake_gpu):
    assert _build(monkeypatch, onnx_root, tmp_path, tensorrt_standin("10.3.0")) == 0
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt_standin("11.4.0"))
    monkeypatch.setitem(backend_select.LOADERS, "torch", lambda ctx: TorchBackend(
        build_model(ctx.config, seed=0), ctx.model_id, "cpu"))
    choice = backend_select.load_backend("auto", str(onnx_root), "m", "cuda")
    assert choice.backend.name == "torch"
    assert choice.fallbacks[0].startswith("tensorrt unavailable: ")
    assert ("plan built with TensorRT 10.3.0 (10.x), this machine runs TensorRT 11.4.0 (11.x)"
            in choice.fallbacks[0])
