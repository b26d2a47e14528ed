"""What a model was trained on (its domain), and whether the active concept words lie inside it.

A model's ``config.json`` may declare its domain (ROS-free; checked by the node's diagnostics
and by the bag runner)::

    "domain": {"name": "open"}
    "domain": {"name": "shapesworld",
               "vocabulary": {"categories": [...], "unary": [...], "binary": [...]}}

``open``: the towers come from CLIP pretrained on web-scale image-text pairs (or SGClip trained
on open-vocabulary captions): any keyword is meaningful. Every other name is a **closed** domain:
the model was trained on the listed words only, and scores for any other word are confident
nonsense (a ShapesWorld model labels pedestrians "apple" or "sink"). A closed domain must list
its vocabulary; an open one must not.

A config without ``domain`` (models trained with ``training.train``, older imports, the untrained
tiny model) is *unknown*: nothing is checked and nothing warns, because nothing is known either
way; the diagnostics say ``unknown``.

Only the lists the model scores (categories, unary, binary) are checked: temporal predicates
and depth relations are computed from boxes and geometry, not by the model, and the
``not <c>`` / no-relation entries the scorer adds are its own.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPEN = "open"
ROLES = ("categories", "unary", "binary")
# The command the log and /diagnostics show for getting open-vocabulary weights.
REAL_WEIGHTS_COMMAND = (
    "python -m training.fetch_weights --openclip ViT-B-32:openai --out models/clip_vit_b32"
)
REAL_WEIGHTS_HINT = (
    f"for real cameras get real weights: {REAL_WEIGHTS_COMMAND} "
    "(or --vine for the published SGClip; docs/training.md)"
)
SHOWN_WORDS = 5  # unknown words named in a message; the rest are counted
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def normalise_word(word: str) -> str:
    """Case- and whitespace-insensitive form: ``" Left  Of"`` and ``"left of"`` are one word."""
    return " ".join(str(word).lower().split())


@dataclass(frozen=True)
class ModelDomain:
    """A declared domain: ``name`` and, for closed domains, the words per role trained on."""

    name: str
    vocabulary: dict[str, tuple[str, ...]] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"domain.name must be a lower-case name such as 'open' or 'shapesworld', "
                f"got {self.name!r}"
            )
        if self.name == OPEN:
            if self.vocabulary is not None:
                raise ValueError("domain 'open' must not list a vocabulary (any word is known)")
            return
        if self.vocabulary is None:
            raise ValueError(
                f"closed domain {self.name!r} must list the words it was trained on "
                f"(domain.vocabulary with {', '.join(ROLES)})"
            )
        object.__setattr__(self, "vocabulary", _vocabulary(self.vocabulary))

    @property
    def closed(self) -> bool:
        """True when only the listed words are meaningful."""
        return self.name != OPEN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through :func:`parse_domain`)."""
        out: dict[str, Any] = {"name": self.name}
        if self.vocabulary is not None:
            out["vocabulary"] = {role: list(self.vocabulary[role]) for role in ROLES}
        return out

    def word_count(self) -> int:
        """How many words a closed domain lists (0 for open)."""
        return sum(len(v) for v in (self.vocabulary or {}).values())


def _vocabulary(data: Any) -> dict[str, tuple[str, ...]]:
    """Validate ``{role: [word, ...]}`` naming the bad key; words kept as written."""
    if not isinstance(data, Mapping):
        raise ValueError(f"domain.vocabulary must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown key(s) in domain.vocabulary: {unknown}")
    out = {}
    for role in ROLES:
        words = data.get(role)
        if words is None:
            raise ValueError(f"missing key 'domain.vocabulary.{role}'")
        if isinstance(words, str) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError(f"domain.vocabulary.{role} must be a list of non-empty strings")
        out[role] = tuple(w.strip() for w in words)
    return out


def card_section(domain: ModelDomain) -> str:
    """The ``## Domain`` section of a MODEL_CARD.md: what the model knows, in words."""
    if not domain.closed:
        text = (
            f"`{OPEN}` (declared in `config.json`): open vocabulary; any short keyword can be "
            "scored. How well depends on the weights (see Quality)."
        )
        return f"## Domain\n{_wrap(text)}\n"
    words = "\n".join(
        _wrap(f"- {role}: {', '.join(domain.vocabulary[role]) or '(none)'}", "  ")
        for role in ROLES
    )
    text = (
        f"`{domain.name}`, closed (declared in `config.json`): the model was trained on these "
        "words only; any other word, and any real camera image, gets meaningless scores. The "
        "node's /diagnostics and the bag runner's summary WARN when the active concept lists "
        "use other words."
    )
    fetch = _wrap(f"Open-vocabulary weights in one command: `{REAL_WEIGHTS_COMMAND}` "
                  "(docs/training.md).")
    return f"## Domain\n{_wrap(text)}\n\n{words}\n\n{fetch}\n"


def _wrap(text: str, indent: str = "") -> str:
    """Markdown paragraph lines of at most 96 characters (code spans kept whole)."""
    return textwrap.fill(text, width=96, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def parse_domain(data: Any) -> ModelDomain | None:
    """A ModelDomain from a config's ``domain`` value; None (unknown) when absent."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError(f"domain must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"name", "vocabulary"})
    if unknown:
        raise ValueError(f"unknown key(s) in domain: {unknown}")
    if "name" not in data:
        raise ValueError("missing key 'domain.name'")
    return ModelDomain(name=data["name"], vocabulary=data.get("vocabulary"))


def read_domain(model_dir: str | Path) -> ModelDomain | None:
    """The domain declared in ``model_dir/config.json`` (None: not declared, or no config).

    Call it after the model store verified the directory; a malformed domain raises
    ValueError naming the file.
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return parse_domain(data.get("domain") if isinstance(data, dict) else None)
    except ValueError as exc:  # includes JSONDecodeError
        raise ValueError(f"{path}: {exc}") from exc


def unknown_words(domain: ModelDomain | None, concepts) -> list[str]:
    """The active words (in list order, once each) a closed domain never saw in their role.

    ``concepts`` is anything with ``categories``, ``unary`` and ``binary`` lists (a ConceptSet).
    Checked per role: a closed model that learned "red" as a colour never learned it as an
    object category. Empty for open and unknown domains.
    """
    if domain is None or not domain.closed:
        return []
    out: list[str] = []
    for role in ROLES:
        known = {normalise_word(w) for w in domain.vocabulary[role]}
        for word in getattr(concepts, role):
            if normalise_word(word) not in known and word not in out:
                out.append(word)
    return out


def _shown(words: list[str]) -> str:
    more = f" (+{len(words) - SHOWN_WORDS} more)" if len(words) > SHOWN_WORDS else ""
    return ", ".join(words[:SHOWN_WORDS]) + more


@dataclass(frozen=True)
class DomainCheck:
    """The active concept lists against the model's domain: what /diagnostics and the bag
    runner report. ``domain`` None means the model declares none (unknown: no warning)."""

    model: str
    domain: ModelDomain | None
    unknown: tuple[str, ...] = ()
    active_words: int = 0

    @property
    def domain_name(self) -> str:
        return self.domain.name if self.domain else "unknown"

    @property
    def closed(self) -> bool:
        return bool(self.domain and self.domain.closed)

    @property
    def hint(self) -> str:
        """How to get real weights; only for closed domains ('' otherwise)."""
        return REAL_WEIGHTS_HINT if self.closed else ""

    @property
    def warning(self) -> str:
        """The WARN sentence when active words lie outside a closed domain, else ''."""
        if not self.unknown:
            return ""
        return (
            f"model {self.model} (domain {self.domain_name}) never saw {len(self.unknown)} of "
            f"the {self.active_words} active concept words: {_shown(list(self.unknown))}; "
            f"its scores for them are meaningless - {self.hint}"
        )

    def notice(self) -> str:
        """The log line on opening a closed-domain model ('' for open/unknown domains)."""
        if not self.closed:
            return ""
        words = [w for role in ROLES for w in self.domain.vocabulary[role]]
        return (
            f"model {self.model} is a closed-domain model ({self.domain_name}, trained on "
            f"{len(words)} words: {_shown(words)}); other words and real scenes give "
            f"meaningless scores - {self.hint}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the bag runner's ``model_domain`` key)."""
        return {
            "model": self.model,
            "domain": self.domain_name,
            "closed": self.closed,
            "unknown_words": list(self.unknown),
            "warning": self.warning,
            "hint": self.hint,
        }


def check_domain(model: str, domain: ModelDomain | None, concepts) -> DomainCheck:
    """Compare the active lists of ``concepts`` with ``domain`` for the model named ``model``."""
    active = sum(len(getattr(concepts, role)) for role in ROLES)
    return DomainCheck(model, domain, tuple(unknown_words(domain, concepts)), active)
