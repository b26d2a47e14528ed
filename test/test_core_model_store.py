"""Model directories: confined to the model root and checked against their manifest."""
from __future__ import annotations

import os

import pytest

from sgclip_ros.core.model_store import (
    ModelFileError,
    model_id,
    resolve_in_root,
    verify_model_dir,
    write_manifest,
)


@pytest.fixture
def model_root(tmp_path):
    root = tmp_path / "models"
    model = root / "m1"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    (model / "config.json").write_text('{"name": "m1"}')
    write_manifest(model, {"model": "m1"})
    return root


def test_a_good_model_directory_verifies(model_root):
    manifest = verify_model_dir(model_root, "m1", required=["model.safetensors"])
    assert manifest["model"] == "m1"
    assert set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert len(model_id(manifest)) == 16


@pytest.mark.parametrize("path", ["../outside", "/etc", "m1/../../outside"])
def test_paths_outside_the_root_are_refused(model_root, path):
    (model_root.parent / "outside").mkdir(exist_ok=True)
    with pytest.raises(ModelFileError, match="outside the model root"):
        resolve_in_root(model_root, path)


def test_a_link_that_escapes_the_root_is_refused(model_root, tmp_path):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x" * 10)
    os.symlink(secret, model_root / "m1" / "evil.safetensors")
    with pytest.raises(ModelFileError, match="outside the model root"):
        resolve_in_root(model_root, "m1/evil.safetensors")
    os.symlink(tmp_path, model_root / "escape")
    with pytest.raises(ModelFileError, match="outside the model root"):
        verify_model_dir(model_root, "escape")


def test_a_changed_file_fails_its_sha256(model_root):
    weights = model_root / "m1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        verify_model_dir(model_root, "m1")


def test_truncated_empty_and_missing_files_are_refused(model_root):
    weights = model_root / "m1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated"):
        verify_model_dir(model_root, "m1")
    weights.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        verify_model_dir(model_root, "m1")
    weights.unlink()
    with pytest.raises(ModelFileError, match="missing"):
        verify_model_dir(model_root, "m1")


def test_a_directory_without_manifest_or_required_file_is_refused(model_root):
    with pytest.raises(ModelFileError, match="required file engine.plan"):
        verify_model_dir(model_root, "m1", required=["engine.plan"])
    (model_root / "m1" / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="no manifest.json"):
        verify_model_dir(model_root, "m1")
    (model_root / "m1" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="unreadable manifest"):
        verify_model_dir(model_root, "m1")
