"""The last N planning steps, shown to the model (as data) so it can see what it already did."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One finished plan: what was asked, what was chosen (if anything) and how it ended."""

    instruction: str
    action: str
    arguments_json: str
    status: str


class History:
    """A bounded, thread-safe list of recent steps, oldest first."""

    def __init__(self, length: int):
        self._steps: deque[Step] = deque(maxlen=max(0, int(length)))
        self._lock = threading.Lock()

    def add(self, step: Step) -> None:
        with self._lock:
            self._steps.append(step)

    def resize(self, length: int) -> None:
        with self._lock:
            self._steps = deque(self._steps, maxlen=max(0, int(length)))

    def recent(self) -> list[Step]:
        with self._lock:
            return list(self._steps)


def format_history(steps: list[Step]) -> str:
    """One line per step; every string JSON-quoted so it stays data."""
    if not steps:
        return "(none)"
    lines = []
    for i, s in enumerate(steps, 1):
        action = f"{json.dumps(s.action)} {s.arguments_json}" if s.action else "none"
        lines.append(
            f"- step {i}: instruction {json.dumps(s.instruction[:200], ensure_ascii=False)}; "
            f"action {action}; outcome {json.dumps(s.status)}"
        )
    return "\n".join(lines)
