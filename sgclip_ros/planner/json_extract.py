"""Tolerant extraction of the one JSON object in a model reply; strict checks come after.

Accepted: a bare object, an object in a ```json code fence, an object after or before prose.
Refused (ExtractionError): no object, truncated JSON, two different objects (ambiguous),
duplicate keys (the parser would silently keep one of them), too deep or too large input.
"""

from __future__ import annotations

import json
import math

MAX_TEXT_CHARS = 65536  # more text than any sane action reply; bounds the scan below
MAX_STARTS = 256  # '{' positions tried: bounds the work on adversarial input
MAX_DEPTH = 8


class ExtractionError(ValueError):
    """No single, well-formed JSON object could be taken from the reply."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ExtractionError(f"duplicate key {dup!r} in the JSON object")
    return dict(pairs)


def _reject_constant(name: str):
    raise ExtractionError(f"{name} is not valid JSON")  # Python's json accepts NaN/Infinity


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e400: Python's json turns it into inf
        raise ExtractionError(f"the number {text[:20]} is out of the range of a float")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
)


def _depth(value, level: int = 1) -> int:
    """Nesting depth of ``value``, counted no further than MAX_DEPTH + 1 (bounded recursion)."""
    if not isinstance(value, (dict, list)):
        return level - 1
    if level > MAX_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value
    return max([level] + [_depth(v, level + 1) for v in children])


def _region_end(text: str, start: int) -> int:
    """Index after the brace that closes the one at ``start`` (strings respected), or -1."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _objects(text: str) -> list[dict]:
    """Every top-level JSON object in ``text``, scanning left to right."""
    found, pos, starts = [], 0, 0
    while starts < MAX_STARTS:
        pos = text.find("{", pos)
        if pos < 0:
            break
        starts += 1
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except ExtractionError:
            raise
        except RecursionError:
            raise ExtractionError("the JSON is nested too deeply") from None
        except ValueError:  # not JSON here (or e.g. an integer with too many digits)
            # Skip the whole brace region: objects nested in a broken object are not replies.
            pos = _region_end(text, pos)
            if pos < 0:
                break  # never closed: a truncated object
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = end
    return found


def extract_json_object(text: str) -> dict:
    """The single JSON object in a model reply, or raise :class:`ExtractionError`."""
    if not isinstance(text, str) or not text.strip():
        raise ExtractionError("the reply is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ExtractionError(f"the reply is longer than {MAX_TEXT_CHARS} characters")
    objects = _objects(text)
    if not objects:
        hint = " (truncated?)" if "{" in text else ""
        raise ExtractionError(f"no complete JSON object in the reply{hint}")
    # Depth first: comparing two deeply nested objects would overflow the stack.
    if any(_depth(o) > MAX_DEPTH for o in objects):
        raise ExtractionError(f"the JSON object is nested deeper than {MAX_DEPTH} levels")
    if any(o != objects[0] for o in objects[1:]):
        raise ExtractionError(f"{len(objects)} different JSON objects in the reply (ambiguous)")
    return objects[0]
