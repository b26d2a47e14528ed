"""SGClip model configuration: which CLIP towers, how many, and how crops are preprocessed.

A config is plain data (JSON-serialisable) so that a saved model directory is self-describing.
Named configs live in ``sgclip_ros/core/model_configs/<name>.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgclip_ros.core.domain import ModelDomain, parse_domain

ROLES = ("category", "unary", "binary")
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"

# OpenAI CLIP normalisation (also what Hugging Face's CLIPImageProcessor uses).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

INTERPOLATIONS = ("bicubic", "bilinear")
RESIZE_MODES = ("shortest", "squash")

# Keyword arguments open_clip.model.CLIP accepts; anything else is a typo or an unsupported model.
_CLIP_KEYS = {
    "embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale",
    "init_logit_bias", "nonscalar_logit_scale",
}
_VISION_REQUIRED = ("image_size", "layers", "width", "patch_size")
_TEXT_REQUIRED = ("context_length", "vocab_size", "width", "heads", "layers")
_TOP_KEYS = {"name", "clip", "towers", "preprocess", "context_length", "domain"}


def tower_index(role: str, towers: int) -> int:
    """Index of the tower serving ``role``: 1 tower shares all, 2 towers split category/rest."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    if not 1 <= towers <= len(ROLES):
        raise ValueError(f"towers must be in 1..{len(ROLES)}, got {towers}")
    return min(ROLES.index(role), towers - 1)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a crop becomes pixels: resize (shortest side or squash), center crop, normalise."""

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        # Lists from JSON become tuples so the frozen config stays hashable.
        object.__setattr__(self, "mean", _triple("preprocess.mean", self.mean))
        object.__setattr__(self, "std", _triple("preprocess.std", self.std))
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int):
            raise ValueError(f"preprocess.image_size must be an int, got {self.image_size!r}")
        if self.image_size < 1:
            raise ValueError(f"preprocess.image_size must be >= 1, got {self.image_size}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"preprocess.std must be positive, got {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"preprocess.interpolation must be one of {INTERPOLATIONS}, "
                f"got {self.interpolation!r}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"preprocess.resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Build from a dict, naming any unknown or missing key in the ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"preprocess must be an object, got {type(data).__name__}")
        known = {"image_size", "mean", "std", "interpolation", "resize_mode"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key(s) in preprocess: {unknown}")
        if "image_size" not in data:
            raise ValueError("missing key 'preprocess.image_size'")
        return cls(**data)


def _triple(key: str, value: Any) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except TypeError as exc:
        raise ValueError(f"{key} must be a sequence of 3 numbers, got {value!r}") from exc
    if len(out) != 3:
        raise ValueError(f"{key} must have 3 values, got {len(out)}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class SGClipConfig:
    """An SGClip model: ``towers`` open_clip CLIP models built from ``clip`` (an open_clip config).

    ``preprocess`` defaults to CLIP normalisation at the vision tower's image size. ``domain``
    (optional, :mod:`sgclip_ros.core.domain`) says what the weights were trained on; it does
    not change any computation.
    """

    name: str
    clip: dict[str, Any] = field(hash=False)
    towers: int = 3
    preprocess: PreprocessConfig | None = field(default=None)
    context_length: int = 77
    domain: ModelDomain | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _validate_clip(self.clip)
        if self.domain is not None and not isinstance(self.domain, ModelDomain):
            object.__setattr__(self, "domain", parse_domain(self.domain))
        if isinstance(self.towers, bool) or not isinstance(self.towers, int):
            raise ValueError(f"towers must be an int in 1..3, got {self.towers!r}")
        if not 1 <= self.towers <= len(ROLES):
            raise ValueError(f"towers must be in 1..{len(ROLES)}, got {self.towers}")
        image_size = self.clip["vision_cfg"]["image_size"]
        if self.preprocess is None:
            object.__setattr__(self, "preprocess", PreprocessConfig(image_size=image_size))
        elif isinstance(self.preprocess, dict):
            object.__setattr__(self, "preprocess", PreprocessConfig.from_dict(self.preprocess))
        if self.preprocess.image_size != image_size:
            raise ValueError(
                f"preprocess.image_size {self.preprocess.image_size} != "
                f"clip.vision_cfg.image_size {image_size}"
            )
        text_ctx = self.clip["text_cfg"]["context_length"]
        if self.context_length != text_ctx:
            raise ValueError(
                f"context_length {self.context_length} != clip.text_cfg.context_length {text_ctx}"
            )

    def tower_index(self, role: str) -> int:
        """Tower index serving ``role`` under this config."""
        return tower_index(role, self.towers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through :meth:`from_dict`)."""
        out = {
            "name": self.name,
            "towers": self.towers,
            "context_length": self.context_length,
            "clip": json.loads(json.dumps(self.clip)),
            "preprocess": self.preprocess.to_dict(),
        }
        # Only when declared: configs without a domain keep the dict (and the engine
        # manifests that record it) they always had.
        if self.domain is not None:
            out["domain"] = self.domain.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SGClipConfig:
        """Build and validate; a ValueError names the offending key."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) in model config: {unknown}")
        for key in ("name", "clip"):
            if key not in data:
                raise ValueError(f"missing key {key!r} in model config")
        if not isinstance(data["name"], str) or not data["name"]:
            raise ValueError(f"'name' must be a non-empty string, got {data['name']!r}")
        clip = data["clip"]
        _validate_clip(clip)
        pre = data.get("preprocess")
        preprocess = PreprocessConfig.from_dict(pre) if pre is not None else None
        ctx = data.get("context_length", clip["text_cfg"]["context_length"])
        return cls(
            name=data["name"],
            clip=clip,
            towers=data.get("towers", 3),
            preprocess=preprocess,
            context_length=ctx,
            domain=parse_domain(data.get("domain")),
        )

    def to_json(self) -> str:
        """Pretty JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _validate_clip(clip: Any) -> None:
    """Check the open_clip config has what CLIP(**clip) needs, naming the bad key."""
    if not isinstance(clip, dict):
        raise ValueError(f"'clip' must be an object, got {type(clip).__name__}")
    unknown = sorted(set(clip) - _CLIP_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) in clip: {unknown}")
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in clip:
            raise ValueError(f"missing key 'clip.{key}'")
    _require_ints("clip", clip, ("embed_dim",))
    for sub, required in (("vision_cfg", _VISION_REQUIRED), ("text_cfg", _TEXT_REQUIRED)):
        cfg = clip[sub]
        if not isinstance(cfg, dict):
            raise ValueError(f"'clip.{sub}' must be an object")
        for key in required:
            if key not in cfg:
                raise ValueError(f"missing key 'clip.{sub}.{key}'")
        _require_ints(f"clip.{sub}", cfg, required)


def _require_ints(prefix: str, cfg: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"'{prefix}.{key}' must be a positive int, got {value!r}")


def available_model_configs() -> list[str]:
    """Names of the bundled configs."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_model_config(name_or_path: str | Path) -> SGClipConfig:
    """Load a config from a JSON file path, or by bundled name (``sgclip-vit-b-32``)."""
    path = Path(name_or_path)
    if not path.is_file():
        bundled = CONFIG_DIR / f"{name_or_path}.json"
        if not bundled.is_file():
            raise ValueError(
                f"no model config file {str(name_or_path)!r} and no bundled config of that name; "
                f"bundled: {available_model_configs()}"
            )
        path = bundled
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return SGClipConfig.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
