"""Agreement between two sets of L2-normalised embeddings, with per-precision tolerances.

fp32 artefacts must match torch eager within ``1e-3`` max absolute difference (the export
acceptance bound). Reduced-precision artefacts (fp16/bf16 engines) are judged by the worst
cosine similarity of a row to its reference instead, since their absolute error scales with
the embedding width. int8 artefacts (ONNX Runtime dynamic quantization, CPU) are judged the
same way with a looser bound: their error comes from 8-bit weights and activations by design.
An export step may ask for a stricter cosine (``compare(..., min_cos=0.999)``), e.g. fp16 ONNX
run by ONNX Runtime on the CPU, whose fp32 accumulation keeps it much closer than a GPU engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

FP32_MAX_ABS = 1e-3
MIN_COSINE = {"fp16": 0.995, "bf16": 0.99, "int8": 0.99}


@dataclass(frozen=True)
class Parity:
    """How far ``actual`` is from ``expected``, and whether that is within tolerance."""

    rows: int
    max_abs: float
    min_cos: float
    precision: str
    ok: bool
    min_cos_bound: float | None = None  # None: MIN_COSINE[precision]

    @property
    def bound(self) -> float | None:
        """The min-cosine bound this result was judged by (None for fp32: max abs)."""
        if self.precision == "fp32":
            return self.min_cos_bound
        return self.min_cos_bound if self.min_cos_bound is not None else MIN_COSINE[self.precision]

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        bound = f"<= {FP32_MAX_ABS:g}" if self.precision == "fp32" else ""
        if self.bound is not None:
            bound += (", " if bound else "") + f"min cos >= {self.bound}"
        return (f"{verdict}: {self.rows} rows, max |diff| {self.max_abs:.3g}, "
                f"min cos {self.min_cos:.6f} ({self.precision}, bound {bound})")


def compare(
    expected: torch.Tensor, actual: torch.Tensor, precision: str = "fp32",
    min_cos: float | None = None,
) -> Parity:
    """Compare [N, D] embeddings; shapes must match. ``min_cos`` replaces the precision's
    cosine bound (fp32: adds a cosine bound to the max-abs one)."""
    if precision != "fp32" and precision not in MIN_COSINE:
        raise ValueError(f"unknown precision {precision!r}")
    e = expected.detach().float().cpu()
    a = actual.detach().float().cpu()
    if e.shape != a.shape:
        rows = int(e.shape[0]) if e.dim() else 0
        return Parity(rows, float("inf"), -1.0, precision, False, min_cos)
    if e.numel() == 0:
        return Parity(0, 0.0, 1.0, precision, True, min_cos)
    max_abs = float((e - a).abs().max())
    cos = float(torch.nn.functional.cosine_similarity(e, a, dim=-1).min())
    finite = bool(torch.isfinite(a).all())
    result = Parity(int(e.shape[0]), max_abs, cos, precision, False, min_cos)
    ok = finite and (result.bound is None or cos >= result.bound)
    if precision == "fp32":
        ok = ok and max_abs <= FP32_MAX_ABS
    return replace(result, ok=ok)
