"""Checkpoints without pickles: a loadable model directory, and the state to resume training.

* :func:`export_model_dir` writes ``model.safetensors`` + ``config.json``
  (:func:`sgclip_ros.core.model.save_model`), ``concepts.yaml`` and a sha256 ``manifest.json``,
  which :func:`sgclip_ros.core.backend_select.load_backend` loads.
* :func:`save_resume` / :func:`load_resume` keep the model, the optimiser (tensors in
  safetensors, hyper-parameters in JSON), the position (epoch, step) and the torch RNG state.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from sgclip_ros.core.concepts import ConceptSet
from sgclip_ros.core.model import SGClipModel, check_state_dict, load_model, save_model
from sgclip_ros.core.model_store import write_manifest

CONCEPTS_FILE = "concepts.yaml"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def export_model_dir(model: SGClipModel, concepts: ConceptSet, out: str | Path,
                     extra: dict[str, Any] | None = None) -> Path:
    """A complete, verified model directory (weights, config, concepts, manifest)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    text = "# Concept lists this model was trained with.\n" + yaml.safe_dump(
        concepts.to_dict(), sort_keys=False)
    (tmp / CONCEPTS_FILE).write_text(text, encoding="utf-8")
    write_manifest(tmp, {"model": model.config.name, **(extra or {})})
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(tensors for safetensors, JSON-able rest) of an optimiser state dict."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, rest: dict) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in rest["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def save_resume(folder: str | Path, model: SGClipModel, optimizer: torch.optim.Optimizer,
                position: dict[str, Any]) -> None:
    """Atomically replace ``folder`` with the model, optimiser, position and RNG state."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    tensors, rest = optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    payload = {"position": position, "optimizer": rest}
    (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.replace(old)
    tmp.replace(folder)
    shutil.rmtree(old, ignore_errors=True)


def has_resume(folder: str | Path) -> bool:
    return (Path(folder) / STATE_FILE).is_file()


def load_resume(folder: str | Path, model: SGClipModel,
                optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model weights, optimiser and torch RNG from ``folder``; returns the position."""
    folder = Path(folder)
    saved = load_model(folder)
    weights = saved.state_dict()
    check_state_dict(model, weights, str(folder))
    model.load_state_dict(weights)
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    torch.set_rng_state(tensors.pop("rng.torch"))
    payload = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    restore_optimizer(optimizer, tensors, payload["optimizer"])
    return payload["position"]
