"""Caption -> events -> temporal spec with an LLM behind an OpenAI-compatible chat API.

The reply follows the reference's event-JSON schema (LASER ``preprocess/prompts.py``)::

    {"video_id": "...", "sequential descriptions": ["..."],
     "time stamps": {"1": {"description": ["..."],
                           "programmatic": ["name(A, circle)", "red(A)", "left of(A, B)"],
                           "duration": "short", "duration precise": "1/4",
                           "video location": "early", "video location precise": "[0, 1/4]"}}}

Key spellings with underscores (``time_stamps``, ``video_location_precise``), the reference's
``decription`` typo and its pydantic ``events`` list form are accepted too. Each time stamp
becomes one event (the conjunction of its atoms: ``name(A, x)`` -> ``Category``,
``color(A, red)`` -> ``Unary(A, red)`` as the reference's ``transfrom_attribute_to_unary``,
``p(A)`` -> ``Unary``, ``p(A, B)`` -> ``Binary``, ``not(p(A, B))`` -> ``Not``), compiled with
:func:`training.spec.compile_events`. Atoms the reference would also drop (more than two
arguments, constants as arguments) are skipped and reported in ``warnings``.

The prompt's wording and examples are ours (the reference repositories carry no licence); the
schema, field names and rules follow theirs. Each request goes through the planner's HTTP client
(:class:`sgclip_ros.planner.llm_client.ChatClient`): temperature 0, ``response_format`` JSON, no
proxy, no redirects, a hard deadline per request, a cap on the response size, and the key sent
only in the Authorization header and redacted from errors. Bounded retries with exponential
backoff on connection errors, timeouts, 429 and 5xx are done here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sgclip_ros.planner import llm_client as client
from sgclip_ros.planner.breaker import CircuitBreaker
from training.spec import (
    DURATIONS,
    LOCATIONS,
    Binary,
    Category,
    Event,
    EventTiming,
    Formula,
    Not,
    TemporalSpec,
    Unary,
    compile_events,
    conjoin,
    timing_for_position,
)

PROMPT_VERSION = "events-json-1"
ATTRIBUTE_PREDICATES = ("color", "colour", "material", "size")
SYSTEM_PROMPT = """You are an expert in logic programming and structured data extraction.
Convert a video caption into a JSON description of its events in temporal order.

Output ONE JSON object with the keys "video_id", "sequential descriptions" (a list of short
sentences, one per event) and "time stamps": an object whose keys are "1", "2", ... in temporal
order. Each time stamp has:
- "description": list of short sentences of what happens at the same time;
- "programmatic": list of relations that hold during the event;
- "duration": one of long, medium, short; "duration precise": a fraction of the video ("1/4");
- "video location": one of early, mid, late;
  "video location precise": the span as fractions ("[0, 1/4]").

Relations are name, unary or binary. Entities are variables written as capital letters
(A, B, C). name(A, noun) says what A is; use it for every entity (no spaces in the noun: use
underscores). A unary relation takes one variable: red(A), moving(A). A binary relation takes
two: left_of(A, B), touching(A, B). Write adjectives as their own unary relations. Write a
relation that stops holding as not(touching(A, B)). Put events that happen one after another
into separate time stamps, and only simultaneous facts into the same time stamp.

Example.
Caption: A girl puts a red cup on the table, then walks away from it.
Video_ID: "ex1"
Action json: {"video_id": "ex1", "sequential descriptions": ["girl A puts red cup B on table C",
"girl A walks away from table C"], "time stamps": {"1": {"description": ["girl A puts red cup B
on table C"], "programmatic": ["name(A, girl)", "name(B, cup)", "red(B)", "name(C, table)",
"holding(A, B)", "on(B, C)"], "duration": "medium", "duration precise": "1/2",
"video location": "early", "video location precise": "[0, 1/2]"}, "2": {"description": ["girl
A walks away from table C"], "programmatic": ["name(A, girl)", "name(C, table)", "walking(A)",
"not(next_to(A, C))"], "duration": "medium", "duration precise": "1/2", "video location":
"late", "video location precise": "[1/2, 1]"}}}
"""


class LLMError(RuntimeError):
    """The API could not be reached or answered with an error (not cached; retry later)."""


class LLMReplyError(ValueError):
    """The reply arrived but is not a usable event description (cached as a failure)."""


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to call the model. The key is read from the environment variable named
    ``api_key_env`` at call time (no header when it is unset, for local servers)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0  # per request: a hard deadline, not a per-read socket timeout
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_response_bytes: int = 2_000_000
    max_tokens: int = 4096  # event JSON of a long caption runs to a few hundred tokens

    def __post_init__(self) -> None:
        if not client.valid_env_name(self.api_key_env):
            # Never quote it: it may be the key itself, pasted into the wrong option.
            raise ValueError(f"api_key_env must be {client.ENV_NAME_RULE}; "
                             "the value given is not shown")

    @property
    def url(self) -> str:
        return self.api_base + "/chat/completions"

    @property
    def api_base(self) -> str:
        """The base URL ending in ``/v1`` (appended when missing, as servers expect it)."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


@dataclass
class Conversion:
    """Specs of one caption plus what was skipped on the way."""

    specs: list[TemporalSpec]
    events: list[Event]
    warnings: list[str] = field(default_factory=list)


class LLMSpecConverter:
    """Caption -> specs through the chat API (one request per caption)."""

    def __init__(self, config: LLMConfig, synonyms: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.synonyms = {normalise_keyword(k): normalise_keyword(v)
                         for k, v in (synonyms or {}).items()}
        self.sleep = sleep

    def convert(self, caption: str, video_id: str = "video", window_size: int = 3) -> Conversion:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user",
             "content": f"Caption: {caption}\nVideo_ID: {json.dumps(video_id)}\nAction json:"},
        ]
        content = chat_completion(self.config, messages, self.sleep)
        events, warnings = events_from_reply(extract_json(content), self.synonyms)
        specs = compile_events(events, (), window_size, caption)
        return Conversion(specs, events, warnings)


# ----------------------------------------------------------------------------- HTTP


def chat_completion(config: LLMConfig, messages: list[dict[str, str]],
                    sleep: Callable[[float], None] = time.sleep) -> str:
    """The assistant message content of one chat completion, with bounded retries."""
    chat = _chat_client(config)
    problem, retry_after = "no attempt made", None
    for attempt in range(config.max_retries + 1):
        if attempt:
            sleep(_backoff(config, attempt, retry_after))
        try:
            return chat.chat(messages)
        except client.LLMError as exc:
            if exc.kind not in _RETRYABLE:
                raise _translated(config, exc) from None
            problem, retry_after = str(exc), exc.retry_after
    raise LLMError(f"{client.safe_url(config.url)}: gave up after {config.max_retries + 1} "
                   f"attempts; last: {problem}")


# Timeouts too: a slow server is worth another try within the retry budget.
_RETRYABLE = client.RETRYABLE | {"timeout"}


def _chat_client(config: LLMConfig) -> client.ChatClient:
    """The planner's client making ONE attempt per call: the retries and backoff are ours."""
    settings = client.LLMConfig(
        base_url=config.api_base, model=config.model, timeout_s=config.timeout_s,
        max_retries=0, max_response_bytes=config.max_response_bytes, temperature=0.0,
        max_tokens=config.max_tokens, json_mode=True,
    )
    # More failures than attempts: the breaker never fails one of our retries fast.
    breaker = CircuitBreaker(threshold=config.max_retries + 2, reset_s=0.0)
    try:
        return client.ChatClient(settings, client.api_key_from_env(config.api_key_env), breaker)
    except client.LLMError as exc:  # a bad base_url: nothing to retry
        raise LLMError(f"{client.safe_url(config.base_url)}: {exc}") from None


def _translated(config: LLMConfig, exc: client.LLMError) -> Exception:
    """A reply that arrived but is unusable is a reply error (cached); the rest is transport."""
    message = f"{client.safe_url(config.url)}: {exc}"
    return LLMReplyError(message) if exc.kind == "bad_response" else LLMError(message)


def _backoff(config: LLMConfig, attempt: int, retry_after: float | None) -> float:
    delay = config.backoff_s * 2 ** (attempt - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, config.max_backoff_s)


# ----------------------------------------------------------------------------- reply parsing


def extract_json(text: str) -> Any:
    """JSON from a reply: the whole text, a ```json fenced block, or the first {...} object."""
    candidates = [text]
    candidates += re.findall(r"```(?:json|JSON)?\s*(.*?)```", text, flags=re.DOTALL)
    start = text.find("{")
    if start >= 0:
        candidates.append(text[start:text.rfind("}") + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate.strip())
        except json.JSONDecodeError:
            continue
    raise LLMReplyError(f"no JSON object in the reply: {text[:200]!r}")


def normalise_keyword(word: str) -> str:
    """``Left_of`` / ``left-of`` / ``left  of`` -> ``left of``."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(word))).strip().lower()


def _normalise_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {normalise_keyword(k).replace("decription", "description"): _normalise_keys(v)
                for k, v in data.items()}
    if isinstance(data, list):
        return [_normalise_keys(item) for item in data]
    return data


def events_from_reply(data: Any, synonyms: Mapping[str, str] | None = None
                      ) -> tuple[list[Event], list[str]]:
    """Validated events (in time order) and warnings about skipped atoms."""
    stamps = _time_stamps(_normalise_keys(data))
    warnings: list[str] = []
    parsed = []
    for label, stamp in stamps:
        if not isinstance(stamp, dict):
            raise LLMReplyError(f"time stamp {label}: expected an object")
        atoms = _stamp_atoms(stamp, label, synonyms or {}, warnings)
        if atoms:
            parsed.append((label, stamp, atoms))
        else:
            warnings.append(f"time stamp {label}: no usable relation, event dropped")
    if not parsed:
        raise LLMReplyError("the reply has no event with a usable relation")
    events = [Event(conjoin(*atoms), _description(stamp), _timing(stamp, i, len(parsed)))
              for i, (_, stamp, atoms) in enumerate(parsed)]
    return events, warnings


def _time_stamps(data: Any) -> list[tuple[str, Any]]:
    if isinstance(data, dict) and set(data) == {"actions"} and isinstance(data["actions"], dict):
        inner = list(data["actions"].values())
        if len(inner) == 1:
            data = inner[0]
    if not isinstance(data, dict):
        raise LLMReplyError(f"reply must be a JSON object, got {type(data).__name__}")
    if isinstance(data.get("time stamps"), dict):
        stamps = data["time stamps"]
        return sorted(stamps.items(), key=lambda kv: _order_key(kv[0]))
    if isinstance(data.get("events"), list):
        events = data["events"]
        ordered = sorted(enumerate(events), key=lambda ie: _order_key(
            ie[1].get("event id", ie[0]) if isinstance(ie[1], dict) else ie[0]))
        return [(str(i + 1), event) for i, (_, event) in enumerate(ordered)]
    raise LLMReplyError("reply has neither 'time stamps' (object) nor 'events' (list)")


def _order_key(label: Any) -> tuple[int, str]:
    text = str(label)
    return (int(text), text) if text.strip().isdigit() else (1 << 30, text)


_ATOM = re.compile(r"^(?P<pred>[^()]+?)\s*\(\s*(?P<args>[^()]*)\)$")
_NEGATED = re.compile(r"^not\s*\((?P<inner>.*)\)$|^not\s+(?P<bare>.*)$")
_VARIABLE = re.compile(r"^(?:[A-Z]|\?[a-z])$")


def _stamp_atoms(stamp: dict, label: str, synonyms: Mapping[str, str],
                 warnings: list[str]) -> list[Formula]:
    program = stamp.get("programmatic")
    if not isinstance(program, list):
        raise LLMReplyError(f"time stamp {label}: 'programmatic' must be a list of strings")
    atoms = []
    for index, item in enumerate(program):
        where = f"time stamp {label} programmatic[{index}] {item!r}"
        if not isinstance(item, str):
            warnings.append(f"{where}: not a string, skipped")
            continue
        atom = _atom(item.strip(), synonyms)
        if isinstance(atom, str):
            warnings.append(f"{where}: {atom}, skipped")
        else:
            atoms.append(atom)
    return atoms


def _atom(text: str, synonyms: Mapping[str, str]) -> Formula | str:
    """A formula, or a string saying why the text is not one."""
    negated = _NEGATED.match(text)
    if negated:
        inner = _atom((negated["inner"] or negated["bare"]).strip(), synonyms)
        if isinstance(inner, (Unary, Binary)):
            return Not(inner)
        return inner if isinstance(inner, str) else "only relations can be negated"
    match = _ATOM.match(text)
    if not match:
        return "not of the form pred(A) or pred(A, B)"
    predicate = normalise_keyword(match["pred"])
    args = [a.strip().strip("'\"") for a in match["args"].split(",") if a.strip()]
    if predicate == "name" or predicate in ATTRIBUTE_PREDICATES:
        if len(args) != 2 or not _VARIABLE.match(args[0]):
            return f"{predicate} needs (Variable, word)"
        word = synonyms.get(normalise_keyword(args[1]), normalise_keyword(args[1]))
        return Category(_var(args[0]), word) if predicate == "name" else Unary(_var(args[0]), word)
    if not 1 <= len(args) <= 2:
        return f"{len(args)} arguments (only unary and binary relations are used)"
    if not all(_VARIABLE.match(a) for a in args):
        return "arguments must be variables (A, B, ...)"
    negated = predicate.startswith("not ")  # "not_touching(A, B)"
    predicate = predicate.removeprefix("not ")
    predicate = synonyms.get(predicate, predicate)
    atom = (Unary(_var(args[0]), predicate) if len(args) == 1
            else Binary(_var(args[0]), predicate, _var(args[1])))
    return Not(atom) if negated else atom


def _var(arg: str) -> str:
    return arg[1].upper() if arg.startswith("?") else arg


def _description(stamp: dict) -> str:
    value = stamp.get("description", "")
    return "; ".join(map(str, value)) if isinstance(value, list) else str(value)


def _timing(stamp: dict, index: int, count: int) -> EventTiming:
    """Timing from the stamp's words and fractions; defaults where missing or malformed."""
    default = timing_for_position(index, count)
    duration = _word(stamp.get("duration"), {"mid": "medium", "middle": "medium"})
    location = _word(stamp.get("video location"), {"middle": "mid", "medium": "mid"})
    duration = duration if duration in DURATIONS else default.duration
    span = _fraction_range(stamp.get("video location precise"))
    if location in LOCATIONS:
        span = span or LOCATIONS[location]
    else:
        location, span = default.location, span or default.location_range
    fraction = _fraction(stamp.get("duration precise"))
    if fraction is None or not 0 < fraction <= 1:
        fraction = max(span[1] - span[0], 1e-3)
    return EventTiming(duration, fraction, location, span)


def _word(value: Any, aliases: dict[str, str]) -> str:
    word = str(value or "").strip().lower()
    return aliases.get(word, word)


def _fraction(value: Any) -> float | None:
    try:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().strip("'\"")
        if "/" in text:
            top, bottom = text.split("/", 1)
            return float(top) / float(bottom)
        return float(text)
    except (ValueError, ZeroDivisionError):
        return None


def _fraction_range(value: Any) -> tuple[float, float] | None:
    """``"[1/4, 3/4]"`` or ``["1/4", "3/4"]`` -> (0.25, 0.75), clipped to [0, 1]; None if bad."""
    if isinstance(value, str):
        value = value.replace("[", "").replace("]", "").split(",")
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    start, end = (_fraction(v) for v in value)
    if start is None or end is None:
        return None
    start, end = min(max(start, 0.0), 1.0), min(max(end, 0.0), 1.0)
    return (start, end) if start <= end else None
