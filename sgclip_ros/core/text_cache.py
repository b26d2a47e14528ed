"""Text embeddings computed once per (model, tower, word list) and reused for every frame."""

from __future__ import annotations

from collections import OrderedDict

import torch

from sgclip_ros.core.backend import EncoderBackend


class TextEmbeddingCache:
    """A small LRU of text embeddings keyed by the backend's model id, tower and texts."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self.encodes = 0  # number of text-encoder calls made, for tests and diagnostics
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, backend: EncoderBackend, tower: int, texts: list[str]) -> torch.Tensor:
        """[T, D] embeddings of ``texts`` with ``tower``; encodes only on a miss."""
        key = (backend.model_id, tower, tuple(texts))
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        emb = backend.encode_texts(tower, backend.tokenize(texts)) if texts else torch.zeros(0, 0)
        self.encodes += 1
        self._entries[key] = emb
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return emb
