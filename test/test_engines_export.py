"""training.export: ONNX + AOTInductor artefacts, their checks, manifests and parity with torch.

Tiny model (CPU). ONNX is exported for the 3-tower tiny model; AOTInductor (a C++ compile per
encoder) for a 1-tower tiny variant to keep this file well under a minute.
"""
from __future__ import annotations

import dataclasses
import json

import onnx
import pytest
import torch
from safetensors.torch import load_file

from bench.core import make_clip
from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.backends.parity import FP32_MAX_ABS, compare
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.graph_builder import GraphSettings
from sgclip_ros.core.io_spec import encoder_specs, io_spec
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import model_id, verify_model_dir, write_manifest
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.window import WindowConfig
from training import export, export_onnx
from training.export_common import parity_pixels, parity_tokens
from training.export_onnx import graph_io_problems

SHAPES = "config/concepts/shapes.yaml"


def _checkpoint(path, towers=3):
    config = dataclasses.replace(load_model_config("sgclip-tiny"), towers=towers)
    save_model(build_model(config, seed=0), path)
    write_manifest(path, {"model": "tiny", "towers": towers})
    return config


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("engines")
    _checkpoint(base / "ck3", 3)
    _checkpoint(base / "ck1", 1)
    out = base / "models"
    assert export.main(["--checkpoint", str(base / "ck3"), "--out", str(out / "tiny"),
                        "--formats", "onnx", "--concepts", SHAPES]) == 0
    assert export.main(["--checkpoint", str(base / "ck1"), "--out", str(out / "tiny1"),
                        "--formats", "onnx,aoti", "--aoti-device", "cpu",
                        "--concepts", SHAPES]) == 0
    return out


def test_export_writes_complete_verified_folders(root):
    top = verify_model_dir(root, "tiny", required=["model.safetensors", "config.json"])
    assert set(top["files"]) == {"model.safetensors", "config.json"}  # subfolders: own manifests
    config = load_model_config("sgclip-tiny")
    manifest = verify_model_dir(root, "tiny/onnx")
    assert manifest["format"] == "sgclip-onnx" and manifest["model_id"] == model_id(top)
    assert manifest["io_spec"] == json.loads(json.dumps(io_spec(config)))
    assert manifest["precision"] == "fp32" and manifest["opset"] == 17
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    names = {s.filename("onnx") for s in encoder_specs(config)}
    assert names | {"text_embeddings.safetensors", "probe.safetensors"} == set(manifest["files"])
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())
    for spec in encoder_specs(config):
        assert manifest["parity"][spec.name]["max_abs"] <= FP32_MAX_ABS
    shapes = manifest["text_embeddings"]["sets"]["shapes"]
    assert shapes["concepts_id"] == load_concepts(SHAPES).concepts_id
    tensors = load_file(root / "tiny/onnx/text_embeddings.safetensors")
    assert tensors["shapes/category/embeddings"].shape == (4, 32)
    assert tensors["shapes/binary/tokens"].shape == (5, 77)
    assert not list(root.glob("tiny/.*partial"))


def test_onnx_graphs_follow_the_io_spec_with_a_dynamic_batch(root):
    import onnxruntime as ort

    for spec in encoder_specs(load_model_config("sgclip-tiny")):
        path = root / "tiny/onnx" / spec.filename("onnx")
        assert graph_io_problems(onnx.load(str(path)), spec) == []
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in (1, 3):
            x = torch.zeros(spec.input.concrete(batch), dtype=spec.input.torch_dtype)
            assert session.run(None, {spec.input.name: x.numpy()})[0].shape == (batch, 32)


@pytest.mark.parametrize("backend,model_dir", [("onnxruntime", "tiny"), ("aoti", "tiny1"),
                                               ("onnxruntime", "tiny1")])
def test_compiled_backends_match_torch_on_real_crops(root, backend, model_dir):
    choice = load_backend(backend, str(root), model_dir, "cpu")
    assert choice.backend.name == backend, choice.fallbacks
    reference = load_backend("torch", str(root), model_dir, "cpu").backend
    compiled = choice.backend
    pixels, tokens = parity_pixels(compiled.config), parity_tokens(compiled.config)
    for tower in range(compiled.towers):
        image = compare(reference.encode_images(tower, pixels),
                        compiled.encode_images(tower, pixels))
        text = compare(reference.encode_texts(tower, tokens),
                       compiled.encode_texts(tower, tokens))
        assert image.ok and text.ok, (image, text)
        assert image.max_abs < 1e-5 and text.max_abs < 1e-5
        assert compiled.logit_scale(tower) == pytest.approx(reference.logit_scale(tower))
    assert compiled.encode_images(0, pixels[:0]).shape == (0, 32)


def test_shipped_concept_lists_come_from_the_precomputed_embeddings(root):
    backend = load_backend("onnxruntime", str(root), "tiny", "cpu").backend
    reference = load_backend("torch", str(root), "tiny", "cpu").backend
    concepts = load_concepts(SHAPES)
    tokens = backend.tokenize(list(concepts.binary))
    assert compare(reference.encode_texts(2, tokens), backend.encode_texts(2, tokens)).ok
    assert backend.text_rows_computed == 0
    mixed = backend.tokenize(["circle", "hexagon"])  # one shipped, one new
    assert compare(reference.encode_texts(0, mixed), backend.encode_texts(0, mixed)).ok
    assert backend.text_rows_computed == 1


def _graph_scores(graph) -> dict:
    scores = {}
    for obj in graph.objects:
        scores.update({("cat", obj.id, p.label): p.score for p in obj.labels})
    scores.update({("attr", a.object_id, a.attribute): a.score for a in graph.attributes})
    scores.update({("rel", r.subject_id, r.predicate, r.object_id): r.score
                   for r in graph.relations})
    return scores


def _run_predictor(backend, frames, boxes):
    settings = GraphSettings(attribute_threshold=0.0, relation_threshold=0.0)
    config = PredictorConfig(window=WindowConfig(size=4), graph=settings)
    predictor = SGClipPredictor(backend, load_concepts(SHAPES), config)
    graph = None
    for t, (frame, frame_boxes) in enumerate(zip(frames, boxes)):
        regions = [Region(Box(*map(float, b)), track_id=f"t{k}") for k, b in
                   enumerate(frame_boxes)]
        graph = predictor.add_frame("cam", frame, (t + 1) * 10**8, regions)
    return graph


@pytest.mark.parametrize("backend,model_dir", [("onnxruntime", "tiny"), ("aoti", "tiny1")])
def test_a_predictor_on_each_backend_gives_the_torch_graph(root, backend, model_dir):
    frames, boxes = make_clip(5, 3, width=160, height=120)
    expected = _graph_scores(_run_predictor(
        load_backend("torch", str(root), model_dir, "cpu").backend, frames, boxes))
    choice = load_backend(backend, str(root), model_dir, "cpu")
    graph = _run_predictor(choice.backend, frames, boxes)
    assert graph.backend == backend
    got = _graph_scores(graph)
    assert set(got) == set(expected) and len(got) > 20
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-4


def test_aoti_folder_records_what_its_packages_depend_on(root):
    manifest = verify_model_dir(root, "tiny1/aoti_cpu")
    assert manifest["format"] == "sgclip-aoti" and manifest["device"] == "cpu"
    assert manifest["torch_version"] == torch.__version__
    assert set(manifest["files"]) >= {"tower0_image.pt2", "tower0_text.pt2", "probe.safetensors"}
    assert all(p["max_abs"] <= FP32_MAX_ABS for k, p in manifest["parity"].items()
               if k.startswith("tower"))


def test_a_failed_parity_check_exits_1_and_leaves_no_folder(root, tmp_path, monkeypatch, capsys):
    _checkpoint(tmp_path / "ck", 1)

    def bad_compare(expected, actual, precision="fp32", min_cos=None):
        result = compare(expected, actual, precision, min_cos)
        return dataclasses.replace(result, max_abs=0.5, ok=False)

    monkeypatch.setattr(export_onnx, "compare", bad_compare)
    out = tmp_path / "out"
    code = export.main(["--checkpoint", str(tmp_path / "ck"), "--out", str(out),
                        "--formats", "onnx", "--concepts", SHAPES])
    assert code == 1
    assert "onnxruntime disagrees with torch" in capsys.readouterr().err
    assert not (out / "onnx").exists() and not list(out.glob(".*partial"))


def test_export_replaces_only_artefact_folders_it_made(tmp_path, capsys):
    _checkpoint(tmp_path / "ck", 1)
    out = tmp_path / "model"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "notes.txt").write_text("mine")
    argv = ["--checkpoint", str(tmp_path / "ck"), "--out", str(out), "--formats", "onnx",
            "--concepts", SHAPES]
    assert export.main(argv) == 2
    assert f"{out / 'onnx'}: not empty and not made by this tool" in capsys.readouterr().err
    assert [p.name for p in (out / "onnx").iterdir()] == ["notes.txt"]
    assert not (out / "model.safetensors").exists()  # refused before anything was written
    (out / "onnx" / "notes.txt").unlink()  # an empty folder may be filled
    assert export.main(argv) == 0
    (out / "onnx" / "stale.onnx").write_bytes(b"from the first export")
    assert export.main(argv) == 0  # its own folder is replaced
    assert (out / "onnx" / export.MARKER).is_file() and not (out / "onnx" / "stale.onnx").exists()
    verify_model_dir(out, "onnx")


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    assert export.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                        "--formats", "onnx"]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    _checkpoint(tmp_path / "ck", 1)
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert export.main(["--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "o"),
                        "--formats", "onnx"]) == 2
    assert "truncated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", "x", "--out", "y", "--formats", "tflite"])
