"""Shared machinery of the compiled backends: batching, precomputed texts, load-time self-check.

A compiled backend runs one exported encoder per (tower, kind). It returns L2-normalised float32
CPU embeddings like :class:`~sgclip_ros.core.backend.TorchBackend`, splits batches larger than
its artefact accepts, answers text requests for the shipped concept lists from the embeddings
precomputed at export, and can check itself against the probe embeddings recorded at export.
"""

from __future__ import annotations

import json
from abc import abstractmethod

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from sgclip_ros.core.backend import EncoderBackend
from sgclip_ros.core.backends.artefacts import (
    PROBE_FILE,
    TEXT_FILE,
    Artefacts,
    BackendUnavailable,
)
from sgclip_ros.core.backends.parity import Parity, compare
from sgclip_ros.core.io_spec import IMAGE, KINDS, TEXT, EncoderSpec, encoder_specs


class PrecomputedTexts:
    """Text embeddings computed at export, looked up by (tower, token row)."""

    def __init__(self, rows: dict[tuple[int, bytes], torch.Tensor], sets: dict):
        self._rows = rows
        self.sets = sets

    @classmethod
    def load(cls, path, role_towers: dict[str, int]) -> PrecomputedTexts:
        """Read a ``text_embeddings.safetensors`` written by training.export (no pickle)."""
        with safe_open(str(path), framework="pt") as f:
            sets = json.loads((f.metadata() or {}).get("sets", "{}"))
        tensors = load_file(str(path))
        rows: dict[tuple[int, bytes], torch.Tensor] = {}
        for set_name, info in sets.items():
            for role in info.get("roles", {}):
                tokens = tensors[f"{set_name}/{role}/tokens"].long()
                emb = tensors[f"{set_name}/{role}/embeddings"].float()
                tower = role_towers[role]
                for t, e in zip(tokens, emb):
                    rows[(tower, t.numpy().tobytes())] = e
        return cls(rows, sets)

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, tower: int, tokens: torch.Tensor) -> list[torch.Tensor | None]:
        """One embedding (or None) per token row."""
        return [self._rows.get((tower, t.numpy().tobytes())) for t in tokens.long().cpu()]


class CompiledBackend(EncoderBackend):
    """An :class:`EncoderBackend` over exported per-encoder artefacts."""

    name = "compiled"

    def __init__(self, artefacts: Artefacts, device: str = "cpu"):
        super().__init__(artefacts.config, artefacts.model_id)
        self.artefacts = artefacts
        self._device = device
        self.precision = artefacts.precision
        self._scales = [float(s) for s in artefacts.manifest["logit_scales"]]
        self._specs = {(s.tower, s.kind): s for s in encoder_specs(artefacts.config)}
        self.texts = PrecomputedTexts({}, {})
        if artefacts.has(TEXT_FILE):
            role_towers = artefacts.manifest["io_spec"]["role_towers"]
            self.texts = PrecomputedTexts.load(artefacts.directory / TEXT_FILE, role_towers)
        self.text_rows_computed = 0  # text rows not found among the precomputed ones
        self.self_check_report: dict[str, Parity] = {}  # filled by self_check()

    @property
    def device(self) -> str:
        return self._device

    def logit_scale(self, tower: int) -> float:
        return self._scales[tower]

    def max_batch(self, spec: EncoderSpec) -> int | None:
        """Largest batch one call of ``spec``'s artefact accepts (None: unbounded)."""
        return None

    @abstractmethod
    def _run(self, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        """One artefact call: [b, ...] input (b <= max_batch) -> [b, D] embeddings."""

    def run_encoder(self, spec: EncoderSpec, x: torch.Tensor) -> torch.Tensor:
        """Run ``spec`` on any batch size; float32 CPU [B, D]."""
        spec.check_input(x)
        x = x.to(spec.input.torch_dtype)
        if len(x) == 0:
            return torch.zeros((0, spec.output.shape[1]), dtype=torch.float32)
        step = self.max_batch(spec) or len(x)
        outs = [self._run(spec, x[i : i + step]) for i in range(0, len(x), step)]
        return torch.cat([o.float().cpu() for o in outs])

    def encode_images(self, tower: int, pixels: torch.Tensor) -> torch.Tensor:
        return self.run_encoder(self._specs[(tower, IMAGE)], pixels)

    def encode_texts(self, tower: int, tokens: torch.Tensor) -> torch.Tensor:
        spec = self._specs[(tower, TEXT)]
        ctx = spec.input.shape[1]
        if tokens.dim() == 2 and tokens.shape[1] < ctx:
            tokens = torch.nn.functional.pad(tokens, (0, ctx - tokens.shape[1]))
        found = self.texts.lookup(tower, tokens) if len(self.texts) else [None] * len(tokens)
        missing = [i for i, e in enumerate(found) if e is None]
        if len(missing) == len(found):
            self.text_rows_computed += len(missing)
            return self.run_encoder(spec, tokens)
        if missing:
            computed = self.run_encoder(spec, tokens[missing])
            for i, row in zip(missing, computed):
                found[i] = row
            self.text_rows_computed += len(missing)
        return torch.stack(found)

    def self_check(self) -> dict[str, Parity]:
        """Run every encoder on the export-time probe; BackendUnavailable if any disagrees."""
        if not self.artefacts.has(PROBE_FILE):
            return {}
        probe = load_file(str(self.artefacts.directory / PROBE_FILE))
        inputs = {IMAGE: probe["pixels"], TEXT: probe["tokens"]}
        report, bad = {}, []
        for tower in range(self.towers):
            for kind in KINDS:
                spec = self._specs[(tower, kind)]
                result = compare(
                    probe[spec.name], self.run_encoder(spec, inputs[kind]), self.precision
                )
                report[spec.name] = result
                if not result.ok:
                    bad.append(f"{spec.name} {result.describe()}")
        self.self_check_report = report
        if bad:
            raise BackendUnavailable(
                f"{self.name} disagrees with the embeddings recorded at export "
                f"({self.artefacts.directory}): " + "; ".join(bad)
            )
        return report
