"""The concept YAML's `geometry:` section <-> GeometrySettings (metric relations from depth).

```yaml
geometry:
  relations: [near, on top of, in front of, behind]   # default: every metric relation
  near_m: 0.5
  up: [0.0, -1.0, 0.0]                                 # in the camera's optical frame
```
Absent (or null): no metric relations. Every key is optional; unknown keys are errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sgclip_ros.core.geometry import GEOMETRY_PREDICATES, THRESHOLDS, GeometrySettings

_NUMBERS = THRESHOLDS
KEYS = ("relations", *_NUMBERS, "up")


def geometry_from_yaml(value: Any) -> GeometrySettings | None:
    """Validate the section; ValueError names the key and what is wrong."""
    if value is None or isinstance(value, GeometrySettings):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of {', '.join(KEYS)}, not {type(value).__name__}")
    for key in value:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown key '{key}' (allowed: {', '.join(KEYS)}){hint}")
    fields: dict[str, Any] = {n: _number(value[n], n) for n in _NUMBERS if n in value}
    if "up" in value:
        fields["up"] = _vector(value["up"])
    if "relations" in value:
        fields["enabled"] = _relations(value["relations"])
    return GeometrySettings(**fields)


def geometry_to_yaml(settings: GeometrySettings) -> dict[str, Any]:
    """The section as plain YAML/JSON data (``geometry_from_yaml`` takes it back unchanged)."""
    data = asdict(settings)
    data["relations"] = list(data.pop("enabled"))
    data["up"] = list(data["up"])
    return data


def _number(value: Any, key: str) -> float:
    # bool is an int subclass; `near_m: yes` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, not {value!r}")
    return float(value)


def _vector(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise ValueError(f"up must be a list of 3 numbers [x, y, z], not {value!r}")
    return tuple(_number(v, "up") for v in value)


def _relations(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"relations must be a list, not {type(value).__name__}")
    names = []
    for index, name in enumerate(value):
        if name not in GEOMETRY_PREDICATES:
            raise ValueError(
                f"relations entry {index} ({name!r}) is not one of {', '.join(GEOMETRY_PREDICATES)}"
            )
        if name in names:
            raise ValueError(f"relations entry {index} ({name!r}) is a duplicate")
        names.append(name)
    return tuple(names)
