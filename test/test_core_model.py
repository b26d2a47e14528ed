"""SGClip model config, tower sharing, embeddings, tokenizer and safetensors save/load."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from sgclip_ros.core.model import (
    REFERENCE_MAX_TOKENS,
    _tokenizer,
    build_model,
    load_model,
    save_model,
    tokenize,
)
from sgclip_ros.core.model_config import (
    CLIP_MEAN,
    ROLES,
    PreprocessConfig,
    SGClipConfig,
    available_model_configs,
    load_model_config,
    tower_index,
)

SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def tiny() -> SGClipConfig:
    return load_model_config("sgclip-tiny")


@pytest.fixture(scope="module")
def tiny_model(tiny):
    return build_model(tiny, seed=0)


def pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- config


def test_tower_index_mapping():
    assert [tower_index(r, 1) for r in ROLES] == [0, 0, 0]
    assert [tower_index(r, 2) for r in ROLES] == [0, 1, 1]
    assert [tower_index(r, 3) for r in ROLES] == [0, 1, 2]
    with pytest.raises(ValueError, match="role"):
        tower_index("ternary", 3)


@pytest.mark.parametrize("name", ["sgclip-vit-b-32", "sgclip-tiny", "sgclip-vit-s-32"])
def test_bundled_configs_load_and_round_trip(name):
    assert name in available_model_configs()
    cfg = load_model_config(name)
    assert cfg.name == name
    assert SGClipConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert cfg.preprocess.image_size == cfg.clip["vision_cfg"]["image_size"]


def test_vit_b_32_matches_openai_clip():
    cfg = load_model_config("sgclip-vit-b-32")
    assert cfg.towers == 3 and cfg.clip["quick_gelu"] is True
    assert cfg.clip["vision_cfg"]["patch_size"] == 32 and cfg.clip["vision_cfg"]["width"] == 768
    assert cfg.preprocess == PreprocessConfig(224, CLIP_MEAN, (0.26862954, 0.26130258, 0.27577711))
    assert load_model_config("sgclip-vit-s-32").towers == 1


def test_config_from_path(tmp_path, tiny):
    path = tmp_path / "my.json"
    path.write_text(tiny.to_json())
    assert load_model_config(path) == tiny
    with pytest.raises(ValueError, match="no model config"):
        load_model_config(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(towers=0), "towers"),
        (lambda d: d.update(towers=4), "towers"),
        (lambda d: d.pop("clip"), "'clip'"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["clip"]["vision_cfg"].pop("patch_size"), "clip.vision_cfg.patch_size"),
        (lambda d: d["clip"]["text_cfg"].update(heads=0), "clip.text_cfg.heads"),
        (lambda d: d["clip"].update(bogus=True), "bogus"),
        (lambda d: d["preprocess"].update(image_size=64), "preprocess.image_size"),
        (lambda d: d["preprocess"].update(interpolation="nearest"), "interpolation"),
        (lambda d: d.update(context_length=64), "context_length"),
    ],
)
def test_config_validation_names_the_bad_key(tiny, edit, message):
    data = tiny.to_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        SGClipConfig.from_dict(data)


def test_preprocess_defaults_to_clip_normalisation(tiny):
    data = tiny.to_dict()
    data.pop("preprocess")
    cfg = SGClipConfig.from_dict(data)
    assert cfg.preprocess.image_size == 32 and cfg.preprocess.mean == CLIP_MEAN


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("towers", [1, 2, 3])
def test_roles_share_towers_as_configured(tiny, towers):
    cfg = dataclasses.replace(tiny, towers=towers)
    model = build_model(cfg, seed=1)
    assert len(model.towers) == towers
    px = pixels(2, 32)
    emb = {r: model.encode_image(r, px) for r in ROLES}
    for a in ROLES:
        for b in ROLES:
            same = model.tower_index(a) == model.tower_index(b)
            assert (model.tower(a) is model.tower(b)) == same
            # Separately initialised towers give different embeddings for the same pixels.
            assert torch.equal(emb[a], emb[b]) == same


def test_embeddings_are_normalised(tiny_model):
    tokens = tokenize(tiny_model.config, ["cup", "on top of", "a red apple"])
    for role in ROLES:
        img = tiny_model.encode_image(role, pixels(3, 32))
        txt = tiny_model.encode_text(role, tokens)
        assert img.shape == (3, 32) and txt.shape == (3, 32)
        assert torch.allclose(img.norm(dim=-1), torch.ones(3), atol=1e-5)
        assert torch.allclose(txt.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_logit_scale_is_exp_of_the_role_tower(tiny):
    model = build_model(tiny, seed=2)
    with torch.no_grad():
        for i, tower in enumerate(model.towers):
            tower.logit_scale.fill_(1.0 + i)
    for role in ROLES:
        scale = model.logit_scale(role)
        assert scale.dim() == 0
        assert torch.isclose(scale, torch.tensor(1.0 + ROLES.index(role)).exp())


def test_seed_reproducible_and_distinct(tiny):
    a, b, c = build_model(tiny, seed=5), build_model(tiny, seed=5), build_model(tiny, seed=6)
    px = pixels(1, 32)
    assert torch.equal(a.encode_image("unary", px), b.encode_image("unary", px))
    assert not torch.equal(a.encode_image("unary", px), c.encode_image("unary", px))


def test_input_shape_checks(tiny_model):
    with pytest.raises(ValueError, match="pixels"):
        tiny_model.encode_image("category", torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="tokens"):
        tiny_model.encode_text("category", torch.zeros(1, 78, dtype=torch.long))


def test_short_token_rows_are_padded(tiny_model):
    tokens = tokenize(tiny_model.config, ["person", "riding"])
    full = tiny_model.encode_text("binary", tokens)
    short = tiny_model.encode_text("binary", tokens[:, :8])
    assert torch.allclose(full, short, atol=1e-6)


# ---------------------------------------------------------------- tokenizer


def test_tokenize_layout_and_cache(tiny):
    tokens = tokenize(tiny, ["cup", "on top of"])
    assert tokens.dtype == torch.int64 and tokens.shape == (2, 77)
    assert tokens[:, 0].tolist() == [SOT, SOT]
    assert tokens[0, 2] == EOT and tokens[0, 3:].eq(0).all()
    assert tokens[1, 4] == EOT  # "on", "top", "of"
    assert _tokenizer(min(77, REFERENCE_MAX_TOKENS)) is _tokenizer(min(77, REFERENCE_MAX_TOKENS))


def test_tokenize_cuts_like_the_reference(tiny):
    (tokens,) = tokenize(tiny, [" ".join(["cup"] * 200)])
    # Reference: HF tokenizer with max_length=75 -> SOT, 73 words, EOT, then padding.
    assert tokens[REFERENCE_MAX_TOKENS - 1] == EOT
    assert tokens[1 : REFERENCE_MAX_TOKENS - 1].ne(0).all()
    assert tokens[REFERENCE_MAX_TOKENS:].eq(0).all()


# ---------------------------------------------------------------- save / load


def test_save_load_round_trip_is_identical(tmp_path, tiny):
    model = build_model(dataclasses.replace(tiny, towers=2), seed=3)
    weights, config = save_model(model, tmp_path / "m")
    assert weights.name == "model.safetensors" and config.name == "config.json"
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config and not loaded.training
    tokens = tokenize(model.config, ["cup", "holding"])
    px = pixels(2, 32, seed=4)
    for role in ROLES:
        assert torch.equal(loaded.encode_image(role, px), model.encode_image(role, px))
        assert torch.equal(loaded.encode_text(role, tokens), model.encode_text(role, tokens))
        assert torch.equal(loaded.logit_scale(role), model.logit_scale(role))


def _edit_config(path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_load_rejects_config_weights_mismatch(tmp_path, tiny):
    save_model(build_model(tiny, seed=0), tmp_path)
    cfg_path = tmp_path / "config.json"
    _edit_config(cfg_path, lambda d: d.update(towers=2))
    with pytest.raises(ValueError, match=r"unexpected key\(s\): towers\.2\."):
        load_model(tmp_path)
    _edit_config(cfg_path, lambda d: (d.update(towers=3), d["clip"]["text_cfg"].update(layers=3)))
    with pytest.raises(ValueError, match=r"missing key\(s\): .*transformer\.resblocks\.2"):
        load_model(tmp_path)
    _edit_config(cfg_path, lambda d: (d["clip"]["text_cfg"].update(layers=2), d["clip"].update(
        embed_dim=16)))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_model(tmp_path)


def test_load_requires_both_files(tmp_path, tiny):
    save_model(build_model(tiny, seed=0), tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_loaded_skeleton_rebuilds_the_causal_mask(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path)
    loaded = load_model(tmp_path)
    for built, skel in zip(tiny_model.towers, loaded.towers, strict=True):
        assert torch.equal(built.attn_mask, skel.attn_mask)
