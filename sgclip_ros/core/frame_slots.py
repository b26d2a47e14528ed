"""Latest-frame slots: one pending frame per camera between callbacks and the inference worker.

A callback only drops its frame into the camera's slot; a frame still waiting there is replaced
and counted as skipped. So at most one inference per camera is ever pending, and callbacks never
block on the model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestFrameSlots:
    """Thread-safe newest-item-per-key store with a blocking ``take``."""

    def __init__(self, on_replaced: Callable[[str, Any], None] | None = None):
        self._cv = threading.Condition()
        self._items: dict[str, Any] = {}
        self._closed = False
        self._on_replaced = on_replaced

    def put(self, key: str, item: Any) -> bool:
        """Store ``item`` as the newest for ``key``; True when it replaced an unprocessed one."""
        with self._cv:
            replaced = key in self._items
            old = self._items.get(key)
            self._items[key] = item
            self._cv.notify()
        if replaced and self._on_replaced is not None:
            self._on_replaced(key, old)
        return replaced

    def take(self, timeout: float) -> dict[str, Any]:
        """Every pending item (waiting up to ``timeout`` s for one); empty when closed."""
        with self._cv:
            if not self._items and not self._closed:
                self._cv.wait(timeout)
            items, self._items = self._items, {}
            return {} if self._closed else items

    def pending(self) -> int:
        with self._cv:
            return len(self._items)

    def wake(self) -> None:
        """Wake a waiting ``take`` (e.g. when detections arrive for a held frame)."""
        with self._cv:
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._items.clear()
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
