"""training.fetch_weights, offline: checkpoints made here (a tiny open_clip CLIP, a tiny VINE)
become verified model folders that the node's loader opens; a file with another sha256 is
refused naming both hashes; pickles need --allow-pickle; downloads are stood in for."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

import training.fetch_weights as F
from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.domain import read_domain
from sgclip_ros.core.model import load_model, tokenize
from sgclip_ros.core.model_store import ModelFileError, sha256_file, verify_model_dir

ARCH = "sgclip-fetch-test-tiny"  # registered with open_clip by the fixture below
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16,
                   "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    """A tiny open_clip CLIP registered under ARCH, saved as a plain state dict."""
    root = tmp_path_factory.mktemp("openclip")
    (root / f"{ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(root / f"{ARCH}.json")
    torch.manual_seed(3)
    model = open_clip.create_model(ARCH)
    path = root / "tiny_clip.bin"
    torch.save(model.state_dict(), path)
    return path


def run(capsys, *argv) -> tuple[int, str]:
    code = F.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def reference_clip(path: Path, quick_gelu: bool = False):
    return open_clip.create_model(ARCH, pretrained=str(path), force_quick_gelu=quick_gelu).eval()


def test_openclip_file_becomes_a_verified_three_tower_model(clip_file, tmp_path, capsys):
    out = tmp_path / "models" / "clip_tiny"
    code, err = run(capsys, "--openclip", f"{ARCH}:{clip_file}", "--out", out)
    assert code == 0, err
    manifest = verify_model_dir(out.parent, out.name, required=["model.safetensors"])
    assert {"model.safetensors", "config.json", "MODEL_CARD.md"} <= set(manifest["files"])
    assert manifest["source"]["sha256"] == sha256_file(clip_file)
    assert manifest["source"]["kind"] == "openclip"
    assert read_domain(out).name == "open"
    assert (out / "model.safetensors").stat().st_mode & 0o044 == 0o044  # others may read it
    choice = load_backend("torch", str(out.parent), out.name, "cpu")  # the node's loader
    assert not choice.untrained
    # Every tower is the pretrained CLIP: same embeddings as open_clip's own model.
    model, ref = load_model(out), reference_clip(clip_file)
    pixels = torch.randn(2, 3, 32, 32)
    tokens = tokenize(model.config, ["cup", "on top of"])
    with torch.no_grad():
        want_img = ref.encode_image(pixels, normalize=True)
        want_txt = ref.encode_text(tokens, normalize=True)
        for role in ("category", "unary", "binary"):
            assert torch.allclose(model.encode_image(role, pixels), want_img, atol=1e-6)
            assert torch.allclose(model.encode_text(role, tokens), want_txt, atol=1e-6)
    card = (out / "MODEL_CARD.md").read_text()
    assert "zero-shot CLIP baseline" in card and "74.37" in card and "`open`" in card
    assert sha256_file(clip_file) in card


def test_a_changed_output_file_is_refused_by_the_model_store(clip_file, tmp_path, capsys):
    out = tmp_path / "m" / "clip"
    assert run(capsys, "--openclip", f"{ARCH}:{clip_file}", "--towers", "1", "--out", out)[0] == 0
    assert load_model(out).config.towers == 1
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_backend("torch", str(out.parent), out.name, "cpu")


def test_a_source_file_with_another_sha256_is_refused_naming_both(clip_file, tmp_path, capsys):
    pinned = "ab" * 32
    out = tmp_path / "clip"
    code, err = run(capsys, "--from-file", clip_file, "--openclip", ARCH, "--sha256", pinned,
                    "--out", out)
    assert code == 1 and pinned in err and sha256_file(clip_file) in err, err
    assert not out.exists()
    good = sha256_file(clip_file)
    code, err = run(capsys, "--from-file", clip_file, "--openclip", ARCH, "--sha256", good,
                    "--out", out)
    assert code == 0, err


def test_a_pretrained_tag_downloads_at_the_revision_with_its_activation_and_preprocessing(
        clip_file, tmp_path, capsys, monkeypatch):
    calls = []
    tag_cfg = {"hf_hub": "org/tiny-clip/", "quick_gelu": True, "mean": (0.5, 0.5, 0.5),
               "std": (0.25, 0.25, 0.25), "interpolation": "bilinear", "resize_mode": "shortest"}
    monkeypatch.setattr(F, "pretrained_cfg", lambda name, tag: tag_cfg if tag == "web" else {})

    def fake_download(cfg, revision):
        calls.append((cfg["hf_hub"], revision))
        return clip_file

    monkeypatch.setattr(F, "download_openclip", fake_download)
    out = tmp_path / "clip"
    code, err = run(capsys, "--openclip", f"{ARCH}:web", "--revision", REVISION, "--out", out)
    assert code == 0, err
    assert calls == [("org/tiny-clip/", REVISION)]
    config = load_model(out).config
    assert config.clip["quick_gelu"] is True
    assert config.preprocess.mean == (0.5, 0.5, 0.5) and config.preprocess.interpolation == (
        "bilinear")
    source = json.loads((out / "manifest.json").read_text())["source"]
    assert source["revision"] == REVISION and source["repo"] == "org/tiny-clip"
    with torch.no_grad():  # QuickGELU towers: open_clip's model built the same way agrees
        pixels = torch.randn(1, 3, 32, 32)
        want = reference_clip(clip_file, quick_gelu=True).encode_image(pixels, normalize=True)
        assert torch.allclose(load_model(out).encode_image("unary", pixels), want, atol=1e-6)


@pytest.mark.parametrize("argv, problem", [
    (["--openclip", "ViT-B-32"], "add :TAG"),
    (["--openclip", "ViT-B-32:no-such-tag"], "no pretrained tag 'no-such-tag'"),
    (["--openclip", "ViT-Q-99:openai"], "no model 'ViT-Q-99'"),
    (["--openclip", "ViT-B-16-SigLIP:webli"], "own tokenizer"),
    (["--openclip", "ViT-B-32:openai", "--revision", "main"], "not a commit id"),
    (["--openclip", "hf-hub:org/clip"], "not supported"),
    (["--openclip", "ViT-B-32:openai", "--from-file", "no/such.bin"], "no such file"),
    (["--vine", "--openclip", "ViT-B-32:openai"], "choose one source"),
    (["--vine", "--towers", "1"], "--towers applies to --openclip"),
])
def test_bad_requests_fail_before_any_download(argv, problem, tmp_path, capsys, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded")

    monkeypatch.setattr(F, "download_openclip", no_download)
    monkeypatch.setattr(F, "download_hub_file", no_download)
    code, err = run(capsys, *argv, "--out", tmp_path / "x")
    assert code == 2 and problem in err, err


def test_an_out_folder_this_tool_did_not_make_is_left_alone(clip_file, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, err = run(capsys, "--openclip", f"{ARCH}:{clip_file}", "--out", mine)
    assert code == 2 and "not made by this tool" in err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # A folder it made is replaced on the next run.
    out = tmp_path / "made"
    for _ in range(2):
        assert run(capsys, "--openclip", f"{ARCH}:{clip_file}", "--out", out)[0] == 0


# ---------------------------------------------------------------- VINE


class Opaque:
    """A non-tensor object in a checkpoint: makes the file need real unpickling."""

    def __init__(self) -> None:
        self.note = "epoch 3"


def vine_state() -> dict[str, torch.Tensor]:
    """Three tiny Hugging Face CLIPModels under the reference's prefixes."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=1, vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=1, image_size=32, patch_size=16),
        projection_dim=32,
    )
    state = {}
    for i, prefix in enumerate(("clip_cate_model", "clip_unary_model", "clip_binary_model")):
        torch.manual_seed(20 + i)
        tower = transformers.CLIPModel(cfg).eval()
        state.update({f"{prefix}.{k}": v.contiguous() for k, v in tower.state_dict().items()})
    return state


@pytest.fixture(scope="module")
def vine_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vine")
    state = vine_state()
    save_file(state, str(root / "vine.safetensors"))
    torch.save(state, root / "vine_state.pt")
    torch.save({"state_dict": state, "meta": Opaque()}, root / "vine_pickled.pt")
    return {p.stem: p for p in root.iterdir()}


def test_vine_needs_a_pinned_revision_and_sha256(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(F, "download_hub_file", lambda *a: pytest.fail("downloaded unpinned"))
    code, err = run(capsys, "--vine", "--allow-pickle", "--out", tmp_path / "v")
    assert code == 2 and "--revision COMMIT" in err and "--sha256 HEX" in err, err
    # The published file is a pickled model: refused before the download without the opt-in.
    code, err = run(capsys, "--vine", "--revision", REVISION, "--sha256", "cd" * 32,
                    "--out", tmp_path / "v")
    assert code == 2 and "--allow-pickle" in err, err


def test_vine_from_the_hub_at_the_pinned_revision(vine_files, tmp_path, capsys, monkeypatch):
    calls = []

    def fake_download(repo, filename, revision):
        calls.append((repo, filename, revision))
        return vine_files["vine_state"]

    monkeypatch.setattr(F, "download_hub_file", fake_download)
    sha = sha256_file(vine_files["vine_state"])
    out = tmp_path / "vine"
    code, err = run(capsys, "--vine", "--repo", "video-fm/vine", "--filename", "vine_state.pt",
                    "--revision", REVISION, "--sha256", sha.upper(), "--out", out)
    assert code == 0, err
    assert calls == [("video-fm/vine", "vine_state.pt", REVISION)]
    source = verify_model_dir(out.parent, out.name)["source"]
    assert source == {"kind": "vine", "repo": "video-fm/vine", "filename": "vine_state.pt",
                      "revision": REVISION, "sha256": sha}
    model = load_model(out)
    assert read_domain(out).name == "open"
    scales = [model.logit_scale(r).item() for r in ("category", "unary", "binary")]
    first = [t.visual.conv1.weight for t in model.towers]
    assert not torch.equal(first[0], first[1])  # three distinct trained towers
    assert len(scales) == 3
    card = (out / "MODEL_CARD.md").read_text()
    assert "published SGClip weights" in card and "76.34" in card and REVISION in card
    # The hub file changed (or the pin is wrong): refused, both hashes named, nothing written.
    code, err = run(capsys, "--vine", "--repo", "video-fm/vine", "--filename", "vine_state.pt",
                    "--revision", REVISION, "--sha256", "ef" * 32, "--out", tmp_path / "v2")
    assert code == 1 and "ef" * 32 in err and sha in err, err
    assert not (tmp_path / "v2").exists()


def test_vine_files_from_elsewhere_and_the_pickle_opt_in(vine_files, tmp_path, capsys):
    code, err = run(capsys, "--from-file", vine_files["vine"], "--out", tmp_path / "a")
    assert code == 0, err
    load_backend("torch", str(tmp_path), "a", "cpu")
    code, err = run(capsys, "--from-file", vine_files["vine_pickled"], "--out", tmp_path / "b")
    assert code == 2 and "--allow-pickle" in err and not (tmp_path / "b").exists(), err
    code, err = run(capsys, "--from-file", vine_files["vine_pickled"], "--allow-pickle",
                    "--out", tmp_path / "b")
    assert code == 0, err
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), name


def test_unknown_and_open_clip_layouts_from_a_file_are_explained(clip_file, tmp_path, capsys):
    odd = tmp_path / "odd.safetensors"
    save_file({"encoder.weight": torch.zeros(2, 2)}, str(odd))
    code, err = run(capsys, "--from-file", odd, "--out", tmp_path / "o")
    assert code == 1 and "unknown layout" in err, err
    code, err = run(capsys, "--from-file", clip_file, "--out", tmp_path / "o")
    assert code == 2 and "--openclip NAME[:TAG]" in err, err
