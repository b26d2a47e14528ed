"""Import a reference SGClip/VINE checkpoint into the sgclip_ros format.

The reference checkpoint holds three Hugging Face ``CLIPModel``s under ``clip_cate_model.*``,
``clip_unary_model.*`` and ``clip_binary_model.*``, either as a state dict (safetensors or a
plain torch file) or as a pickled whole model (``laser_model_v1.pt``). Unpickling runs arbitrary
code, so a pickled model is only read with ``--trust-pickle``.

    python -m training.import_vine --src laser_model_v1.pt --out models/vine --trust-pickle

Exit codes: 0 imported; 1 the checkpoint is unusable (missing tower, unknown layout, bad shapes);
2 a pickle was refused (or the command line is wrong).
"""

from __future__ import annotations

import argparse
import pickle
import re
import sys
import types
from pathlib import Path

import torch
from torch import nn

from sgclip_ros.core.domain import OPEN, ModelDomain
from sgclip_ros.core.model import SGClipModel, check_state_dict, save_model
from sgclip_ros.core.model_config import ROLES, SGClipConfig

PREFIXES = {
    "category": "clip_cate_model",
    "unary": "clip_unary_model",
    "binary": "clip_binary_model",
}
HEAD_WIDTH = 64  # every released CLIP uses 64-wide attention heads

_LAYER = re.compile(r"^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$")
_LAYER_MAP = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_PLAIN_MAP = {
    "logit_scale": "logit_scale",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
}
_IGNORED = ("text_model.embeddings.position_ids", "vision_model.embeddings.position_ids")


class CheckpointError(Exception):
    """The checkpoint cannot be converted (exit code 1)."""


class PickleRefusedError(Exception):
    """The file is a pickled object and ``trust_pickle`` was not given (exit code 2)."""


# ---------------------------------------------------------------- loading


# Pickles may only resolve these modules for real; every other class becomes a _Stub.
_TRUSTED_MODULES = ("torch", "collections", "builtins", "copyreg", "_codecs", "numpy")
_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)


class _Stub(nn.Module):
    """Stands in for any non-torch class of a pickled model (the reference's ``laser`` classes,
    transformers' CLIP modules, tokenizers): keeps the attributes, drops behaviour and hooks."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            return
        if "_modules" in state:
            nn.Module.__setstate__(self, state)
            for name in _HOOK_DICTS:  # hooks would call stubbed functions
                if name in self.__dict__:
                    self.__dict__[name] = type(self.__dict__[name])()
        else:
            self.__dict__.update(state)


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".", 1)[0] in _TRUSTED_MODULES:
            return super().find_class(module, name)
        # Only tensors are needed: do not import (and run) third-party code for other classes.
        return type(name, (_Stub,), {"__module__": f"stub.{module}"})


def _lenient_pickle_module() -> types.ModuleType:
    mod = types.ModuleType("import_vine_pickle")
    mod.__dict__.update({k: getattr(pickle, k) for k in dir(pickle) if not k.startswith("__")})
    mod.Unpickler = _LenientUnpickler
    mod.load = lambda f, **kw: _LenientUnpickler(f, **kw).load()
    return mod


def _refusal(src: Path) -> str:
    return (
        f"{src} is a pickled Python object, not a plain state dict. Unpickling runs arbitrary "
        "code from the file, so it is refused by default. If you trust where the file came from, "
        "re-run with --trust-pickle (import_vine(..., trust_pickle=True)); better, convert it "
        "once and keep only the safetensors output."
    )


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= path.stat().st_size - 8


def _torch_load(src: Path, trust_pickle: bool):
    if trust_pickle:
        # Opted in: full unpickling, but classes outside torch/numpy are stubbed, not imported.
        return torch.load(
            src, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module()
        )
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise PickleRefusedError(_refusal(src)) from exc
        raise CheckpointError(f"{src}: cannot read: {exc}") from exc


def _heads_hint(obj) -> tuple[int, int] | None:
    """(vision, text) head counts from a pickled CLIPModel's config, when it carries one."""
    try:
        cfg = obj.clip_cate_model.config
        return int(cfg.vision_config.num_attention_heads), int(cfg.text_config.num_attention_heads)
    except (AttributeError, TypeError, ValueError):
        return None


def load_checkpoint(
    src: str | Path, trust_pickle: bool = False
) -> tuple[dict[str, torch.Tensor], tuple[int, int] | None]:
    """Read ``src`` into a flat ``{name: tensor}`` dict plus a (vision, text) heads hint."""
    src = Path(src)
    if not src.is_file():
        raise CheckpointError(f"{src}: no such file")
    if src.suffix == ".safetensors" or _is_safetensors(src):
        from safetensors.torch import load_file

        try:
            return load_file(str(src)), None
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{src}: cannot read safetensors: {exc}") from exc
    obj = _torch_load(src, trust_pickle)
    return _flatten(obj, src), _heads_hint(obj)


def _flatten(obj, src: Path) -> dict[str, torch.Tensor]:
    """Tensors from a module, a state dict, or a dict wrapping one (``state_dict``/``model``)."""
    if isinstance(obj, nn.Module):
        # Walk parameters/buffers directly: state_dict() would run (stubbed) hooks.
        named = [*obj.named_parameters(remove_duplicate=False),
                 *obj.named_buffers(remove_duplicate=False)]
        obj = {k: v.detach() for k, v in named}
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if key in obj and not isinstance(obj[key], torch.Tensor):
                return _flatten(obj[key], src)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            # DistributedDataParallel checkpoints prefix every key with "module.".
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointError(f"{src}: no tensors found (got {type(obj).__name__})")


# ---------------------------------------------------------------- conversion


def split_towers(weights: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{role: HF CLIPModel state dict}``; CheckpointError names every missing prefix."""
    towers = {}
    for role, prefix in PREFIXES.items():
        marker = prefix + "."
        # Also accept the towers nested in a wrapper module ("model.clip_cate_model.*").
        sub = {
            ("." + k).split("." + marker, 1)[1]: v
            for k, v in weights.items()
            if ("." + k).find("." + marker) >= 0
        }
        if sub:
            towers[role] = sub
    missing = [f"{PREFIXES[r]}.* ({r})" for r in ROLES if r not in towers]
    if missing:
        found = sorted({k.split(".", 1)[0] for k in weights})[:10]
        raise CheckpointError(
            f"checkpoint lacks the tower(s) {', '.join(missing)}; top-level prefixes found: {found}"
        )
    return towers


def _count_layers(hf: dict[str, torch.Tensor], tower: str) -> int:
    ids = {int(m.group(2)) for k in hf if (m := _LAYER.match(k)) and m.group(1) == tower}
    if not ids or ids != set(range(len(ids))):
        raise CheckpointError(f"{tower}: transformer layers missing or not numbered 0..N-1")
    return len(ids)


def _need(hf: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in hf:
        raise CheckpointError(f"missing tensor {key!r} (not a Hugging Face CLIPModel layout?)")
    return hf[key]


def infer_clip_config(hf: dict[str, torch.Tensor], heads: tuple[int, int] | None = None) -> dict:
    """open_clip config dict from HF CLIP tensor shapes (``heads`` = (vision, text) override)."""
    v_width = _need(hf, "vision_model.embeddings.class_embedding").shape[0]
    patch = _need(hf, "vision_model.embeddings.patch_embedding.weight").shape[-1]
    n_pos = _need(hf, "vision_model.embeddings.position_embedding.weight").shape[0]
    grid = round((n_pos - 1) ** 0.5)
    if grid * grid != n_pos - 1:
        raise CheckpointError(f"vision position embedding has {n_pos} rows: not 1 + a square grid")
    vocab, t_width = _need(hf, "text_model.embeddings.token_embedding.weight").shape
    ctx = _need(hf, "text_model.embeddings.position_embedding.weight").shape[0]
    embed_dim = _need(hf, "visual_projection.weight").shape[0]
    v_mlp = _need(hf, "vision_model.encoder.layers.0.mlp.fc1.weight").shape[0] / v_width
    t_mlp = _need(hf, "text_model.encoder.layers.0.mlp.fc1.weight").shape[0] / t_width
    v_heads, t_heads = heads or (max(v_width // HEAD_WIDTH, 1), max(t_width // HEAD_WIDTH, 1))
    if v_width % v_heads or t_width % t_heads:
        raise CheckpointError(
            f"widths {v_width}/{t_width} not divisible by heads {v_heads}/{t_heads}"
        )
    return {
        "embed_dim": int(embed_dim),
        "quick_gelu": True,  # HF/OpenAI CLIP uses quick_gelu
        "vision_cfg": {
            "image_size": int(grid * patch), "layers": _count_layers(hf, "vision_model"),
            "width": int(v_width), "head_width": int(v_width // v_heads),
            "mlp_ratio": float(v_mlp), "patch_size": int(patch),
        },
        "text_cfg": {
            "context_length": int(ctx), "vocab_size": int(vocab), "width": int(t_width),
            "heads": int(t_heads), "layers": _count_layers(hf, "text_model"),
            "mlp_ratio": float(t_mlp),
        },
    }


def _layer_key(tower: str, idx: str, rest: str) -> str | None:
    base = ("visual." if tower == "vision_model" else "") + f"transformer.resblocks.{idx}."
    for hf_name, oc_name in _LAYER_MAP.items():
        if rest.startswith(hf_name + "."):
            return base + oc_name + rest[len(hf_name) :]
    return None


def convert_tower(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIPModel state dict -> open_clip CLIP state dict (q/k/v fused, projections .T)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in hf.items():
        if key in _IGNORED:
            continue
        if key in _PLAIN_MAP:
            out[_PLAIN_MAP[key]] = value
        elif key == "visual_projection.weight":
            out["visual.proj"] = value.t()
        elif key == "text_projection.weight":
            out["text_projection"] = value.t()
        elif m := _LAYER.match(key):
            tower, idx, rest = m.groups()
            if q := re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest):
                qkv.setdefault((tower, idx, q.group(2)), {})[q.group(1)] = value
            elif (new := _layer_key(tower, idx, rest)) is not None:
                out[new] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unrecognised tensor(s) for a CLIPModel: {sorted(unknown)[:8]}")
    for (tower, idx, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"{tower} layer {idx}: incomplete q/k/v {kind}")
        prefix = ("visual." if tower == "vision_model" else "") + f"transformer.resblocks.{idx}"
        out[f"{prefix}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def convert_weights(
    weights: dict[str, torch.Tensor],
    source: str,
    name: str = "vine-imported",
    heads: tuple[int, int] | None = None,
    domain: ModelDomain | None = None,
) -> SGClipModel:
    """An SGClipModel (eval mode) from a flat reference state dict (see :func:`load_checkpoint`).

    ``source`` names the checkpoint in errors; ``domain`` is declared in the config. Raises
    CheckpointError for a missing tower, an unknown layout or mismatched shapes.
    """
    towers = split_towers(weights)
    clip_cfg = infer_clip_config(towers["category"], heads)
    for role in ROLES[1:]:
        other = infer_clip_config(towers[role], heads)
        if other != clip_cfg:
            raise CheckpointError(f"tower {PREFIXES[role]} has a different architecture: {other}")
    config = SGClipConfig(name=name, clip=clip_cfg, towers=3, domain=domain)
    state = {}
    for i, role in enumerate(ROLES):
        state.update({f"towers.{i}.{k}": v for k, v in convert_tower(towers[role]).items()})
    model = SGClipModel(config)
    try:
        check_state_dict(model, state, f"converted {source}")
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    model.load_state_dict(state, strict=True)
    return model.eval()


def import_vine(
    src: str | Path,
    out_dir: str | Path,
    trust_pickle: bool = False,
    name: str = "vine-imported",
    heads: tuple[int, int] | None = None,
) -> Path:
    """Convert a reference checkpoint to ``out_dir`` (model.safetensors + config.json).

    ``heads`` = (vision, text) attention heads; default: from a pickled model's config, else
    width / 64. The config declares the ``open`` domain (SGClip was trained on open-vocabulary
    video captions). Raises CheckpointError (unusable file) or PickleRefusedError.
    """
    weights, hint = load_checkpoint(src, trust_pickle)
    model = convert_weights(weights, str(src), name, heads or hint, ModelDomain(OPEN))
    save_model(model, out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m training.import_vine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="reference checkpoint (.safetensors/.pt/...)")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow unpickling a whole pickled model (runs code from the file)")
    parser.add_argument("--name", default="vine-imported", help="model name stored in config")
    args = parser.parse_args(argv)
    try:
        out = import_vine(args.src, args.out, trust_pickle=args.trust_pickle, name=args.name)
    except PickleRefusedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
