"""Safe model directories: paths confined to a model root, files checked against a sha256 manifest.

Every model or engine directory holds a ``manifest.json`` listing its files with their size and
sha256. Loading refuses, with an error naming the path and the reason: paths outside the model
root, symbolic links that escape it, files missing from or not matching the manifest, and empty
or truncated files.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class ModelFileError(ValueError):
    """A model file or directory that must not be loaded."""


def resolve_in_root(root: str | Path, path: str | Path) -> Path:
    """``path`` (absolute, or relative to ``root``) with links resolved; must stay inside root."""
    root_real = Path(os.path.realpath(root))
    if not root_real.is_dir():
        raise ModelFileError(f"model root {root} is not a directory")
    candidate = Path(path) if Path(path).is_absolute() else root_real / path
    real = Path(os.path.realpath(candidate))
    if real != root_real and root_real not in real.parents:
        raise ModelFileError(f"{path}: resolves to {real}, outside the model root {root_real}")
    return real


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    model_dir: str | Path, extra: dict | None = None, recursive: bool = True
) -> Path:
    """List every regular file of ``model_dir`` with size and sha256.

    ``recursive=False`` lists only the top level: a model directory whose engine subfolders
    (``onnx/``, ``tensorrt/`` ...) carry manifests of their own.
    """
    model_dir = Path(model_dir)
    files = {}
    found = model_dir.rglob("*") if recursive else model_dir.glob("*")
    for path in sorted(p for p in found if p.is_file() and p.name != MANIFEST):
        if path.is_symlink():
            raise ModelFileError(f"{path}: model directories must not contain links")
        files[path.relative_to(model_dir).as_posix()] = {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
    manifest = dict(extra or {})
    manifest["files"] = files
    out = model_dir / MANIFEST
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def verify_model_dir(root: str | Path, model_dir: str | Path, required=()) -> dict:
    """Check ``model_dir`` (inside ``root``) against its manifest; returns the manifest.

    ``required`` names files that must be listed (e.g. the weights).
    """
    directory = resolve_in_root(root, model_dir)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ModelFileError(f"{directory}: no {MANIFEST}; refusing an unverified model")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    for name in required:
        if name not in files:
            raise ModelFileError(f"{manifest_path}: does not list required file {name}")
    for name, entry in files.items():
        _verify_file(root, directory, name, entry)
    return manifest


def _verify_file(root, directory: Path, name: str, entry: dict) -> None:
    path = resolve_in_root(root, directory / name)
    if not path.is_file():
        raise ModelFileError(f"{directory / name}: listed in the manifest but missing")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path}: empty file")
    if size != entry.get("bytes"):
        raise ModelFileError(
            f"{path}: {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced)"
        )
    actual = sha256_file(path)
    if actual != entry.get("sha256"):
        raise ModelFileError(f"{path}: sha256 {actual[:16]}... does not match the manifest")


def model_id(manifest: dict, weights: str = "model.safetensors") -> str:
    """A short id of the weights: text embeddings are cached under it."""
    entry = manifest["files"].get(weights)
    return entry["sha256"][:16] if entry else "unknown"
