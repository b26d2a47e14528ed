"""Reduced-precision exports: fp16/bf16 ONNX graphs and the ONNX Runtime int8 backend.

Tiny 3-tower model (CPU), exported once with ``--formats onnx,onnx-int8 --precision
fp32,fp16,bf16``; tests that damage a folder work on their own copy of it.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sgclip_ros.core import backend_select
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backend_select import FALLBACK_ORDER, BackendOptions, load_backend
from sgclip_ros.core.backends.artefacts import load_artefacts, subdir_for
from sgclip_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from sgclip_ros.core.backends.parity import MIN_COSINE, compare
from sgclip_ros.core.io_spec import encoder_specs
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import MANIFEST, ModelFileError, verify_model_dir, write_manifest
from training import export, export_onnx
from training.export_common import parity_pixels, parity_tokens, shapes_world_pixels
from training.export_onnx import graph_io_problems
from training.onnx_precision import (
    graph_precision,
    precision_problems,
    to_bfloat16_bits,
    topological_sort,
)

SHAPES = "config/concepts/shapes.yaml"
CONFIG = load_model_config("sgclip-tiny")


def _checkpoint(path, towers=3):
    config = dataclasses.replace(CONFIG, towers=towers)
    save_model(build_model(config, seed=0), path)
    write_manifest(path, {"model": "tiny", "towers": towers})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("reduced")
    _checkpoint(base / "ck")
    assert export.main(["--checkpoint", str(base / "ck"), "--out", str(base / "root" / "m"),
                        "--formats", "onnx,onnx-int8", "--precision", "fp32,fp16,bf16",
                        "--concepts", SHAPES]) == 0
    return base / "root"


@pytest.fixture
def root(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "root", symlinks=True)
    return tmp_path / "root"


def _rewrite(folder) -> None:
    """Re-hash a folder after its files were changed on purpose (consistent but different)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("files")
    write_manifest(folder, manifest)


def _torch(root):
    return load_backend("torch", str(root), "m", "cpu").backend


def _reduced_backend(root, precision):
    reference = _torch(root)
    art = load_artefacts(root, "m", subdir_for("onnx", precision=precision), "onnx",
                         reference.config, reference.model_id)
    return OnnxRuntimeBackend(art, "cpu")


# ---- fp16 / bf16 ---------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_graphs_are_valid_with_float32_io_and_record_their_precision(pristine, precision):
    folder = pristine / "m" / f"onnx_{precision}"
    manifest = verify_model_dir(pristine, f"m/onnx_{precision}")
    assert manifest["format"] == "sgclip-onnx" and manifest["precision"] == precision
    assert {"LayerNormalization", "Softmax"} <= set(manifest["fp32_ops"])
    for spec in encoder_specs(CONFIG):
        path = folder / spec.filename("onnx")
        onnx.checker.check_model(str(path), full_check=True)
        graph = onnx.load(str(path))
        assert graph_io_problems(graph, spec) == []  # float32 pixels / int64 tokens in, fp32 out
        assert precision_problems(graph, precision) == []
        assert graph_precision(graph) == precision
        weights = manifest["weight_elements"][spec.name]
        low = "float16" if precision == "fp16" else "bfloat16"
        assert weights[low] > 5 * weights.get("float", 0)  # bf16: the patch Conv stays fp32
        norms = [n for n in graph.graph.node if n.op_type == "LayerNormalization"]
        assert norms, "LayerNorm should reach the graph as one op (opset 17)"
    assert graph_precision(onnx.load(str(pristine / "m/onnx/tower0_image.onnx"))) == "fp32"


def test_fp16_onnx_runs_in_onnxruntime_within_cosine_0999_of_torch_on_real_crops(pristine):
    manifest = verify_model_dir(pristine, "m/onnx_fp16")
    for spec in encoder_specs(CONFIG):
        entry = manifest["parity"][spec.name]
        assert entry["executed"] and entry["ok"] and entry["min_cos"] >= 0.999
    fp16, reference = _reduced_backend(pristine, "fp16"), _torch(pristine)
    pixels = torch.cat([parity_pixels(CONFIG), shapes_world_pixels(CONFIG)])
    tokens = parity_tokens(CONFIG)
    for tower in range(3):
        image = compare(reference.encode_images(tower, pixels), fp16.encode_images(tower, pixels),
                        "fp16", min_cos=0.999)
        spec = encoder_specs(CONFIG)[2 * tower + 1]
        text = compare(reference.encode_texts(tower, tokens), fp16.run_encoder(spec, tokens),
                       "fp16", min_cos=0.999)
        assert image.ok and text.ok, (image, text)
    assert fp16.encode_images(0, pixels[:1]).shape == (1, 32)
    assert fp16.self_check()  # its probe passes at the fp16 bound


def test_bf16_is_written_checked_and_says_whether_it_ran(pristine):
    manifest = verify_model_dir(pristine, "m/onnx_bf16")
    assert manifest["device"] == "tensorrt"
    for spec in encoder_specs(CONFIG):
        entry = manifest["parity"][spec.name]
        if entry["executed"]:  # an onnxruntime with CPU bfloat16 kernels
            assert entry["min_cos"] >= MIN_COSINE["bf16"]
        else:
            assert "onnxruntime CPU cannot run bf16" in entry["reason"]


def test_a_failed_fp16_parity_exits_1_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    _checkpoint(tmp_path / "ck", towers=1)
    monkeypatch.setattr(export_onnx, "FP16_EXPORT_MIN_COS", 1.01)
    out = tmp_path / "out"
    assert export.main(["--checkpoint", str(tmp_path / "ck"), "--out", str(out), "--formats",
                        "onnx", "--precision", "fp16", "--concepts", SHAPES]) == 1
    assert "fp16 graph too far from torch" in capsys.readouterr().err
    assert not (out / "onnx_fp16").exists() and not list(out.glob(".*"))


def test_precision_arguments_are_checked(capsys):
    for argv in (["--precision", "fp64"], ["--formats", "onnx-int8", "--precision", "fp16"]):
        with pytest.raises(SystemExit):
            export.main(["--checkpoint", "x", "--out", "y", *argv])
    assert "--precision applies to the onnx format" in capsys.readouterr().err


def test_bfloat16_rounding_matches_torch():
    values = torch.tensor([0.0, -0.0, 1.0, 1.00390625, 1.01171875, -3.14159, 1e-30, 3e38,
                           float("inf"), float("-inf")])
    expected = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bfloat16_bits(values.numpy()), expected)
    assert to_bfloat16_bits(np.array([np.nan], np.float32))[0] & 0x7F80 == 0x7F80


def test_topological_sort_puts_producers_first():
    nodes = [helper.make_node("Relu", ["b"], ["c"], name="second"),
             helper.make_node("Neg", ["a"], ["b"], name="first")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", 1, [2])],
                              [helper.make_tensor_value_info("c", 1, [2])])
    topological_sort(graph)
    assert [n.name for n in graph.node] == ["first", "second"]


# ---- int8 ----------------------------------------------------------------------------------
def test_int8_folder_has_a_manifest_and_quantized_graphs(pristine):
    manifest = verify_model_dir(pristine, "m/onnx_int8")
    assert manifest["format"] == "sgclip-onnx-int8" and manifest["precision"] == "int8"
    assert manifest["quantization"]["method"] == "dynamic"
    names = {s.filename("onnx") for s in encoder_specs(CONFIG)}
    assert names | {"text_embeddings.safetensors", "probe.safetensors"} == set(manifest["files"])
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())
    for spec in encoder_specs(CONFIG):
        assert manifest["quantization"]["operators"][spec.name]["int8_ops"]
        assert manifest["parity"][spec.name]["min_cos"] >= MIN_COSINE["int8"]
        graph = onnx.load(str(pristine / "m/onnx_int8" / spec.filename("onnx")))
        assert graph_io_problems(graph, spec) == [] and graph_precision(graph) == "int8"


def test_the_int8_backend_loads_checks_itself_and_stays_close_to_torch(pristine):
    choice = load_backend("onnxruntime-int8", str(pristine), "m", "cpu")
    assert choice.backend.name == "onnxruntime-int8" and choice.fallbacks == []
    backend = choice.backend
    assert set(backend.self_check_report) == {s.name for s in encoder_specs(CONFIG)}
    assert all(r.ok and r.min_cos >= 0.99 for r in backend.self_check_report.values())
    reference = _torch(pristine)
    pixels = shapes_world_pixels(CONFIG)
    for tower in range(3):
        result = compare(reference.encode_images(tower, pixels),
                         backend.encode_images(tower, pixels), "int8")
        assert result.ok, result


def test_a_changed_int8_file_is_refused(root):
    path = root / "m" / "onnx_int8" / "tower1_image.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256") as info:
        load_backend("onnxruntime-int8", str(root), "m", "cpu")
    assert "tower1_image.onnx" in str(info.value)


def _scramble_int8_weights(path) -> None:
    """Reverse every int8 weight tensor: a valid graph that computes the wrong embeddings."""
    model = onnx.load(str(path))
    changed = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.INT8 and len(tensor.dims) == 2:
            values = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(values[::-1, ::-1].copy(), tensor.name))
            changed += 1
    assert changed
    onnx.save(model, str(path))


def test_a_failed_int8_self_check_falls_back_to_fp32_onnxruntime_with_the_reason(root):
    _scramble_int8_weights(root / "m" / "onnx_int8" / "tower2_image.onnx")
    _rewrite(root / "m" / "onnx_int8")  # the manifest agrees: only the self-check can tell
    for options in (BackendOptions(), BackendOptions(self_check=False)):  # int8 always checks
        choice = load_backend("onnxruntime-int8", str(root), "m", "cpu", options)
        assert choice.backend.name == "onnxruntime"
        assert len(choice.fallbacks) == 1
        reason = choice.fallbacks[0]
        assert reason.startswith("onnxruntime-int8 unavailable: onnxruntime-int8 disagrees")
        assert "tower2_image FAILED" in reason and "min cos >= 0.99" in reason


def test_int8_selection_order_and_missing_folder(root):
    assert FALLBACK_ORDER["onnxruntime-int8"] == ("onnxruntime-int8", "onnxruntime", "aoti",
                                                  "torch")
    assert "onnxruntime-int8" not in FALLBACK_ORDER["auto"]  # never picked silently
    assert load_backend("auto", str(root), "m", "cpu").backend.name == "onnxruntime"
    shutil.rmtree(root / "m" / "onnx_int8")
    choice = load_backend("onnxruntime-int8", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime"
    assert "no onnx_int8/ folder" in choice.fallbacks[0]
    assert "--formats onnx-int8" in choice.fallbacks[0]


def test_int8_is_not_used_on_a_gpu(root, monkeypatch):
    monkeypatch.setitem(backend_select.LOADERS, "torch", lambda ctx: TorchBackend(
        build_model(ctx.config, seed=0), ctx.model_id, "cpu"))
    choice = load_backend("onnxruntime-int8", str(root), "m", "cuda")
    assert choice.fallbacks[0] == ("onnxruntime-int8 unavailable: int8 graphs are for the CPU, "
                                   "the device is cuda")


def test_an_int8_folder_without_a_probe_is_not_run_unchecked(root):
    (root / "m" / "onnx_int8" / "probe.safetensors").unlink()
    _rewrite(root / "m" / "onnx_int8")
    choice = load_backend("onnxruntime-int8", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime"
    assert "no probe.safetensors to check the int8 graphs against" in choice.fallbacks[0]
