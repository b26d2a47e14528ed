"""Backend selection: the fallback order, one reason per fallback, and every refusal.

Tiny 3-tower model exported to ONNX once; each test works on its own copy of that root.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from sgclip_ros.core import backend_select
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backend_select import (
    FALLBACK_ORDER,
    UNTRAINED_TINY,
    BackendOptions,
    load_backend,
)
from sgclip_ros.core.backends import onnxruntime_backend
from sgclip_ros.core.backends.artefacts import load_artefacts
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import MANIFEST, ModelFileError, model_id, write_manifest
from training import export

SHAPES = "config/concepts/shapes.yaml"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("selection")
    save_model(build_model(load_model_config("sgclip-tiny"), seed=0), base / "ck")
    write_manifest(base / "ck", {"model": "tiny"})
    assert export.main(["--checkpoint", str(base / "ck"), "--out", str(base / "root" / "m"),
                        "--formats", "onnx", "--concepts", SHAPES]) == 0
    return base / "root"


@pytest.fixture
def root(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "root", symlinks=True)
    return tmp_path / "root"


def _rewrite(folder, edit) -> None:
    """Edit a folder's manifest fields and re-hash it (a consistent but different folder)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("files")
    edit(manifest)
    write_manifest(folder, manifest)


def _fake_aoti(root, edit=lambda m: None, payload=b"not a package"):
    """An aoti_cpu/ folder with a valid-looking manifest but garbage packages."""
    folder = root / "m" / "aoti_cpu"
    shutil.copytree(root / "m" / "onnx", folder)
    for onnx_file in folder.glob("*.onnx"):
        onnx_file.unlink()
        onnx_file.with_suffix(".pt2").write_bytes(payload)

    def change(manifest):
        manifest.update(format="sgclip-aoti", device="cpu", torch_version=torch.__version__)
        edit(manifest)

    _rewrite(folder, change)


def test_the_documented_fallback_order():
    assert FALLBACK_ORDER["auto"] == ("tensorrt", "onnxruntime", "aoti", "torch")
    assert FALLBACK_ORDER["tensorrt"][0] == "tensorrt" and FALLBACK_ORDER["torch"] == ("torch",)
    assert all(order[-1] == "torch" for order in FALLBACK_ORDER.values())


def test_auto_on_cpu_skips_tensorrt_with_a_reason_and_runs_onnxruntime(root):
    choice = load_backend("auto", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime" and choice.requested == "auto"
    assert choice.fallbacks == ["tensorrt unavailable: needs a CUDA device, the device is cpu"]
    assert not choice.untrained and len(choice.backend.model_id) == 16


def test_torch_is_loaded_without_looking_at_artefacts(root):
    shutil.rmtree(root / "m" / "onnx")
    choice = load_backend("torch", str(root), "m", "cpu")
    assert isinstance(choice.backend, TorchBackend) and choice.fallbacks == []


def test_missing_folders_fall_back_to_torch_naming_each_folder(root):
    shutil.rmtree(root / "m" / "onnx")
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert choice.backend.name == "torch"
    assert [r.split(":")[0] for r in choice.fallbacks] == ["onnxruntime unavailable",
                                                          "aoti unavailable"]
    assert "no onnx/ folder" in choice.fallbacks[0] and "training.export" in choice.fallbacks[0]
    assert "no aoti_cpu/ folder" in choice.fallbacks[1]


def test_aoti_preference_falls_back_to_onnxruntime(root):
    choice = load_backend("aoti", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime"
    assert len(choice.fallbacks) == 1 and "no aoti_cpu/ folder" in choice.fallbacks[0]


def test_tensorrt_preference_on_cpu(root):
    choice = load_backend("tensorrt", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime"
    assert "needs a CUDA device" in choice.fallbacks[0]


def test_on_cuda_no_candidate_silently_runs_on_cpu(root, monkeypatch):
    monkeypatch.setitem(backend_select.LOADERS, "torch", lambda ctx: TorchBackend(
        build_model(ctx.config, seed=0), ctx.model_id, "cpu"))
    choice = load_backend("auto", str(root), "m", "cuda")
    reasons = dict(r.split(" ", 1) for r in choice.fallbacks)
    assert list(reasons) == ["tensorrt", "onnxruntime", "aoti"]
    assert "no tensorrt/ folder" in reasons["tensorrt"]
    assert "CUDAExecutionProvider" in reasons["onnxruntime"]
    assert "no aoti_cuda/ folder" in reasons["aoti"]


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_onnxruntime_quietly_using_cpu_instead_of_cuda_is_caught(root, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(backend_select.LOADERS, "aoti", backend_select.LOADERS["torch"])
    monkeypatch.setitem(backend_select.LOADERS, "torch", lambda ctx: TorchBackend(
        build_model(ctx.config, seed=0), ctx.model_id, "cpu"))
    choice = load_backend("onnxruntime", str(root), "m", "cuda")
    assert "not CUDAExecutionProvider" in choice.fallbacks[0]


def test_missing_onnxruntime_package_is_a_fallback(root, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert choice.backend.name == "torch"
    assert "onnxruntime is not importable" in choice.fallbacks[0]
    assert "pip install onnxruntime" in choice.fallbacks[0]


def test_stale_exports_are_a_fallback(root):
    other = build_model(load_model_config("sgclip-tiny"), seed=1)
    save_model(other, root / "m")  # new weights, same folder: the onnx/ export is stale
    write_manifest(root / "m", {"model": "retrained"}, recursive=False)
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert choice.backend.name == "torch" and "stale: exported from weights" in choice.fallbacks[0]


def test_a_folder_of_another_format_or_config_is_a_fallback(root):
    _rewrite(root / "m" / "onnx", lambda m: m.update(format="sgclip-aoti"))
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert "format is 'sgclip-aoti', expected 'sgclip-onnx'" in choice.fallbacks[0]
    _rewrite(root / "m" / "onnx", lambda m: m.update(format="sgclip-onnx",
                                                     io_spec={**m["io_spec"], "embed_dim": 64}))
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert "io_spec.embed_dim" in choice.fallbacks[0]


def test_an_unloadable_onnx_file_is_a_fallback(root):
    (root / "m" / "onnx" / "tower1_text.onnx").write_bytes(b"\x08garbage")
    _rewrite(root / "m" / "onnx", lambda m: None)
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert choice.backend.name == "torch"
    assert "onnxruntime cannot load" in choice.fallbacks[0]
    assert "tower1_text.onnx" in choice.fallbacks[0]


def test_a_self_check_disagreement_is_a_fallback_with_the_figures(root):
    from safetensors.torch import load_file, save_file

    probe_path = root / "m" / "onnx" / "probe.safetensors"
    probe = load_file(probe_path)
    probe["tower2_image"] = torch.roll(probe["tower2_image"], 1, dims=0)
    save_file(probe, probe_path)
    _rewrite(root / "m" / "onnx", lambda m: None)
    choice = load_backend("onnxruntime", str(root), "m", "cpu")
    assert choice.backend.name == "torch"
    assert "disagrees with the embeddings recorded at export" in choice.fallbacks[0]
    assert "tower2_image FAILED" in choice.fallbacks[0]
    unchecked = load_backend("onnxruntime", str(root), "m", "cpu",
                             BackendOptions(self_check=False))
    assert unchecked.backend.name == "onnxruntime"


def test_aoti_packages_for_another_torch_or_device_are_not_loaded(root):
    _fake_aoti(root, lambda m: m.update(torch_version="1.13.0"))
    choice = load_backend("aoti", str(root), "m", "cpu")
    assert "compiled with torch 1.13.0" in choice.fallbacks[0]
    shutil.rmtree(root / "m" / "aoti_cpu")
    _fake_aoti(root, lambda m: m.update(device="cuda"))
    choice = load_backend("aoti", str(root), "m", "cpu")
    assert "compiled for 'cuda', running on cpu" in choice.fallbacks[0]


def test_an_unloadable_aoti_package_is_a_fallback(root):
    _fake_aoti(root)
    choice = load_backend("aoti", str(root), "m", "cpu")
    assert choice.backend.name == "onnxruntime"
    assert "cannot load AOTInductor package" in choice.fallbacks[0]


# ---- refusals: integrity problems raise, whatever the preference ---------------------------
@pytest.mark.parametrize("model_dir", ["../outside", "/etc", "m/../../outside"])
def test_model_paths_outside_the_root_are_refused(root, model_dir):
    (root.parent / "outside").mkdir(exist_ok=True)
    with pytest.raises(ModelFileError, match="outside the model root"):
        load_backend("auto", str(root), model_dir, "cpu")


def test_an_artefact_folder_linking_out_of_the_root_is_refused(root, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(str(root / "m" / "onnx"), outside)
    os.symlink(outside, root / "m" / "onnx")
    with pytest.raises(ModelFileError, match=r"onnx: resolves to .*outside the model root"):
        load_backend("onnxruntime", str(root), "m", "cpu")


def test_an_artefact_file_linking_out_of_the_root_is_refused(root, tmp_path):
    target = root / "m" / "onnx" / "tower0_image.onnx"
    moved = tmp_path / "tower0_image.onnx"
    shutil.move(str(target), moved)
    os.symlink(moved, target)
    with pytest.raises(ModelFileError, match="outside the model root"):
        load_backend("auto", str(root), "m", "cpu")


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "sha256"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.unlink(), "listed in the manifest but missing"),
])
@pytest.mark.parametrize("name", ["onnx/tower2_image.onnx", "onnx/text_embeddings.safetensors",
                                  "model.safetensors"])
def test_damaged_files_are_refused_naming_the_path(root, damage, message, name):
    damage(root / "m" / name)
    with pytest.raises(ModelFileError, match=message) as info:
        load_backend("onnxruntime", str(root), "m", "cpu")
    assert os.path.basename(name) in str(info.value)


def test_an_engine_folder_is_verified_like_the_others(root):
    folder = root / "m" / "tensorrt"
    shutil.copytree(root / "m" / "onnx", folder)
    for onnx_file in folder.glob("*.onnx"):
        onnx_file.rename(onnx_file.with_suffix(".plan"))
    _rewrite(folder, lambda m: m.update(format="sgclip-tensorrt"))
    config = load_model_config("sgclip-tiny")
    mid = model_id(json.loads((root / "m" / MANIFEST).read_text()))
    assert load_artefacts(root, "m", "tensorrt", "tensorrt", config, mid).fmt == "tensorrt"
    plan = folder / "tower0_image.plan"
    plan.write_bytes(plan.read_bytes()[:10])
    with pytest.raises(ModelFileError, match="truncated"):
        load_artefacts(root, "m", "tensorrt", "tensorrt", config, mid)
    shutil.rmtree(folder)
    os.symlink(root.parent, folder)
    with pytest.raises(ModelFileError, match="outside the model root"):
        load_artefacts(root, "m", "tensorrt", "tensorrt", config, mid)


def test_untrained_tiny_and_bad_preferences(root):
    choice = load_backend("tensorrt", str(root), UNTRAINED_TINY, "cpu")
    assert choice.untrained and choice.backend.name == "torch" and choice.fallbacks == []
    with pytest.raises(ValueError, match="backend must be one of"):
        load_backend("openvino", str(root), "m", "cpu")


def test_onnxruntime_threads_are_configurable(root, monkeypatch):
    seen = {}
    original = onnxruntime_backend.OnnxRuntimeBackend.__init__

    def spy(self, artefacts, device="cpu", intra_op_threads=0):
        seen["threads"] = intra_op_threads
        original(self, artefacts, device, intra_op_threads)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeBackend, "__init__", spy)
    choice = load_backend("onnxruntime", str(root), "m", "cpu", BackendOptions(intra_op_threads=1))
    assert choice.backend.name == "onnxruntime" and seen["threads"] == 1
