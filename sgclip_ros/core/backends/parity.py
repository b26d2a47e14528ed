"""Agreement between two sets of L2-normalised embeddings, with per-precision tolerances.

fp32 artefacts must match torch eager within ``1e-3`` max absolute difference (the export
acceptance bound). Reduced-precision artefacts (fp16/bf16 engines) are judged by the worst
cosine similarity of a row to its reference instead, since their absolute error scales with
the embedding width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

FP32_MAX_ABS = 1e-3
MIN_COSINE = {"fp16": 0.995, "bf16": 0.99}


@dataclass(frozen=True)
class Parity:
    """How far ``actual`` is from ``expected``, and whether that is within tolerance."""

    rows: int
    max_abs: float
    min_cos: float
    precision: str
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        bound = (f"<= {FP32_MAX_ABS:g}" if self.precision == "fp32"
                 else f"min cos >= {MIN_COSINE[self.precision]}")
        return (f"{verdict}: {self.rows} rows, max |diff| {self.max_abs:.3g}, "
                f"min cos {self.min_cos:.6f} ({self.precision}, bound {bound})")


def compare(expected: torch.Tensor, actual: torch.Tensor, precision: str = "fp32") -> Parity:
    """Compare [N, D] embeddings; shapes must match."""
    if precision != "fp32" and precision not in MIN_COSINE:
        raise ValueError(f"unknown precision {precision!r}")
    e = expected.detach().float().cpu()
    a = actual.detach().float().cpu()
    if e.shape != a.shape:
        return Parity(int(e.shape[0]) if e.dim() else 0, float("inf"), -1.0, precision, False)
    if e.numel() == 0:
        return Parity(0, 0.0, 1.0, precision, True)
    max_abs = float((e - a).abs().max())
    min_cos = float(torch.nn.functional.cosine_similarity(e, a, dim=-1).min())
    finite = bool(torch.isfinite(a).all())
    if precision == "fp32":
        ok = finite and max_abs <= FP32_MAX_ABS
    else:
        ok = finite and min_cos >= MIN_COSINE[precision]
    return Parity(int(e.shape[0]), max_abs, min_cos, precision, ok)
