"""What training.fetch_weights accepts from open_clip: NAME[:TAG] specs, the plain-CLIP check of
a model config, and the pretrained tag's preprocessing; plus the tool's two error kinds."""

from __future__ import annotations

import difflib

from sgclip_ros.core.model_config import PreprocessConfig

# open_clip model configs whose tokenizer or text tower is not the plain CLIP one: the node
# tokenises with open_clip's SimpleTokenizer and builds open_clip.model.CLIP towers only.
_UNSUPPORTED_KEYS = {
    "vision_cfg": ("timm_model_name",),
    "text_cfg": ("hf_model_name", "hf_tokenizer_name", "tokenizer_kwargs"),
}
_CLIP_VOCAB = 49408  # SimpleTokenizer's vocabulary


class FetchError(Exception):
    """The source cannot be used (exit code 1)."""


class UsageError(Exception):
    """Bad or missing arguments, or an opt-in not given (exit code 2)."""


def parse_openclip(spec: str) -> tuple[str, str | None]:
    """``NAME[:TAG]`` -> (NAME, TAG or None); TAG may be a file path (open_clip's rule)."""
    if spec.startswith(("hf-hub:", "local-dir:")):
        raise UsageError(f"--openclip {spec}: open_clip's hf-hub:/local-dir: names are not "
                         "supported; use a built-in NAME[:TAG], with --from-file for a "
                         "checkpoint downloaded elsewhere")
    name, _, tag = spec.partition(":")
    if not name:
        raise UsageError(f"--openclip {spec!r}: expected NAME[:TAG], e.g. ViT-B-32:openai")
    return name, tag or None


def openclip_config(name: str) -> dict:
    """open_clip's config for ``name`` if it is a plain CLIP the node can run; else UsageError."""
    import open_clip

    cfg = open_clip.get_model_config(name)
    if cfg is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"open_clip has no model {name!r}{hint} (open_clip.list_models())")
    problems = [f"{sub}.{key}" for sub, keys in _UNSUPPORTED_KEYS.items()
                for key in keys if key in cfg.get(sub, {})]
    problems += [key for key in ("custom_text", "multimodal_cfg") if cfg.get(key)]
    if cfg.get("text_cfg", {}).get("vocab_size") != _CLIP_VOCAB:
        problems.append("text_cfg.vocab_size")
    if problems:
        raise UsageError(
            f"open_clip model {name} has its own tokenizer or towers ({', '.join(problems)}); "
            "sgclip_ros runs plain CLIP towers with the CLIP BPE tokenizer (ViT-B-32, ViT-B-16, "
            "ViT-L-14 and their -quickgelu variants)"
        )
    cfg.pop("custom_text", None)
    return cfg


def tag_preprocess(image_size: int, tag_cfg: dict) -> PreprocessConfig:
    """The tag's mean/std/resize (open_clip's defaults are CLIP's) as a PreprocessConfig."""
    try:
        return PreprocessConfig.from_dict({
            "image_size": image_size,
            "mean": list(tag_cfg.get("mean", PreprocessConfig(image_size).mean)),
            "std": list(tag_cfg.get("std", PreprocessConfig(image_size).std)),
            "interpolation": tag_cfg.get("interpolation", "bicubic"),
            "resize_mode": tag_cfg.get("resize_mode", "shortest"),
        })
    except ValueError as exc:
        raise FetchError(f"the pretrained tag's preprocessing is not supported: {exc}") from exc
