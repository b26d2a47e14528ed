"""The SGClip model: one to three open_clip CLIP towers serving the category/unary/binary roles.

Weights are stored as ``model.safetensors`` beside a ``config.json`` holding the full
:class:`SGClipConfig`; nothing is ever unpickled and nothing is downloaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from sgclip_ros.core.model_config import SGClipConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# The reference tokenises with max_length=75 (SOT + 73 tokens + EOT); longer texts are cut there.
REFERENCE_MAX_TOKENS = 75


class SGClipModel(nn.Module):
    """Holds ``config.towers`` CLIP towers; roles map to towers via ``config.tower_index``."""

    def __init__(self, config: SGClipConfig) -> None:
        super().__init__()
        self.config = config
        self.towers = nn.ModuleList(CLIP(**config.clip) for _ in range(config.towers))

    def tower_index(self, role: str) -> int:
        """Index into ``self.towers`` of the tower serving ``role``."""
        return self.config.tower_index(role)

    def tower(self, role: str) -> CLIP:
        """The open_clip CLIP serving ``role``."""
        return self.towers[self.tower_index(role)]

    def encode_image(self, role: str, pixels: torch.Tensor) -> torch.Tensor:
        """float [B,3,S,S] normalised pixels -> L2-normalised [B,D] image embeddings."""
        s = self.config.preprocess.image_size
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            raise ValueError(f"pixels must be [B,3,{s},{s}], got {tuple(pixels.shape)}")
        return self.tower(role).encode_image(pixels, normalize=True)

    def encode_text(self, role: str, tokens: torch.Tensor) -> torch.Tensor:
        """int64 [B,L] token ids (L <= context_length, zero-padded) -> L2-normalised [B,D]."""
        ctx = self.config.context_length
        if tokens.dim() != 2 or tokens.shape[1] > ctx:
            raise ValueError(f"tokens must be [B,L] with L <= {ctx}, got {tuple(tokens.shape)}")
        if tokens.shape[1] < ctx:
            # open_clip's positional embedding and mask are fixed-length: pad with the pad id 0.
            tokens = nn.functional.pad(tokens, (0, ctx - tokens.shape[1]))
        return self.tower(role).encode_text(tokens.long(), normalize=True)

    def logit_scale(self, role: str) -> torch.Tensor:
        """0-dim ``exp(logit_scale)`` of the tower serving ``role``."""
        return self.tower(role).logit_scale.exp().reshape(())


def build_model(config: SGClipConfig, seed: int | None = None) -> SGClipModel:
    """A randomly initialised model (``seed`` makes the init reproducible), in eval mode."""
    if seed is None:
        model = SGClipModel(config)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SGClipModel(config)
    return model.eval()


@lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> SimpleTokenizer:
    # The BPE vocabulary ships inside open_clip: no network access.
    return SimpleTokenizer(context_length=context_length)


def tokenize(config: SGClipConfig, texts: list[str]) -> torch.Tensor:
    """CLIP BPE token ids, int64 [B, context_length], cut like the reference (75 tokens)."""
    if isinstance(texts, str):
        raise TypeError("tokenize expects a list of strings, not a single string")
    ctx = config.context_length
    cut = min(ctx, REFERENCE_MAX_TOKENS)
    tokens = _tokenizer(cut)(list(texts), context_length=cut)
    if cut < ctx:
        tokens = nn.functional.pad(tokens, (0, ctx - cut))
    return tokens.long()


def save_model(model: SGClipModel, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path, config_path = out / WEIGHTS_FILE, out / CONFIG_FILE
    meta = {"format": "sgclip", "config": json.dumps(model.config.to_dict())}
    save_file(weights, str(weights_path), metadata=meta)
    config_path.write_text(model.config.to_json(), encoding="utf-8")
    return weights_path, config_path


def _key_report(missing: list[str], unexpected: list[str], limit: int = 8) -> str:
    def show(keys: list[str]) -> str:
        more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {show(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {show(unexpected)}")
    return "; ".join(parts)


def check_state_dict(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming missing/unexpected keys or shape mismatches."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the model config: {_key_report(missing, unexpected)}"
        )
    bad = [
        f"{k}: file {tuple(weights[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(weights[k].shape) != tuple(v.shape)
    ]
    if bad:
        shown = "; ".join(bad[:8]) + (f" ... (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise ValueError(f"{source} has {len(bad)} tensor shape mismatch(es): {shown}")


def _causal_mask(n: int) -> torch.Tensor:
    # open_clip's text mask: -inf above the diagonal (each token sees itself and earlier ones).
    return torch.full((n, n), float("-inf")).triu_(1)


def _skeleton(config: SGClipConfig) -> SGClipModel:
    """A model with uninitialised weights (to be overwritten): skips the slow random init."""
    with torch.device("meta"):
        model = SGClipModel(config)
    model = model.to_empty(device="cpu")
    for tower in model.towers:
        transient = {n for n, _ in tower.named_buffers()} - set(tower.state_dict())
        if transient - {"attn_mask"}:
            # Some other non-saved buffer this code cannot rebuild: construct the slow way.
            return SGClipModel(config)
        if getattr(tower, "attn_mask", None) is not None:
            tower.attn_mask.copy_(_causal_mask(tower.attn_mask.shape[0]))
    return model


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> SGClipModel:
    """Load a directory written by :func:`save_model` (safetensors only), in eval mode."""
    root = Path(model_dir)
    weights_path, config_path = root / WEIGHTS_FILE, root / CONFIG_FILE
    for path in (weights_path, config_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (expected {WEIGHTS_FILE} + {CONFIG_FILE})")
    try:
        config = SGClipConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: {exc}") from exc
    with safe_open(str(weights_path), framework="pt") as f:
        fmt = (f.metadata() or {}).get("format")
    if fmt not in (None, "sgclip"):
        raise ValueError(f"{weights_path}: not an SGClip weights file (format={fmt!r})")
    weights = load_file(str(weights_path))
    model = _skeleton(config)
    check_state_dict(model, weights, str(weights_path))
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval()
