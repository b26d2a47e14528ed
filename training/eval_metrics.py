"""Scene-graph classification metrics of the reference protocol (ground-truth tracks given).

A hit is the true label within the top-K scores of its track (categories), of its (frame,
track) (unary predicates) or of its (frame, ordered pair) (binary predicates):

* ``category_r1/_r5``: per track with a true category in the list;
* ``unary_r1``: per (frame, track, true predicate);
* ``binary_r1/_r5``: per (frame, ordered pair, true predicate);
* ``binary_rprec``: per (frame, ordered pair) with n >= 1 true predicates, the share of them
  in the top n (R-precision: multi-label pairs cap R@1, not R-precision);
* ``binary_map``: mean over predicates (with at least one positive) of the average precision
  of that predicate's scores over every (frame, ordered pair); tied scores form one threshold.

Top-K ties are broken by list order (``torch.topk``); K larger than the list counts every entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

METRIC_KEYS = ("category_r1", "category_r5", "unary_r1", "binary_r1", "binary_r5",
               "binary_rprec", "binary_map", "n_videos", "n_frames")


@dataclass
class VideoScores:
    """One video's predictions on its ground-truth tracks.

    ``category`` [N, C] pooled per track; ``unary`` [T, N, U]; ``binary`` [T, N, N, B]
    (subject, object); ``present`` [T, N] bool.
    """

    category: Tensor
    unary: Tensor
    binary: Tensor
    present: Tensor


def topk_hits(scores: Tensor, labels: Tensor, k: int) -> tuple[int, int]:
    """(true labels within each row's top-k, true labels) over rows of [R, C] scores."""
    if scores.numel() == 0:
        return 0, 0
    k = min(k, scores.shape[1])
    top = torch.zeros_like(labels, dtype=torch.bool)
    top.scatter_(1, scores.topk(k, dim=1).indices, True)
    truth = labels.bool()
    return int((top & truth).sum()), int(truth.sum())


def r_precision(scores: Tensor, labels: Tensor) -> tuple[float, int]:
    """(sum over rows with n >= 1 true labels of |top-n ∩ true| / n, number of such rows)."""
    truth = labels.bool()
    counts = truth.sum(1)
    total, rows = 0.0, 0
    for row in torch.nonzero(counts > 0).flatten().tolist():
        n = int(counts[row])
        top = scores[row].topk(n).indices
        total += float(truth[row, top].sum()) / n
        rows += 1
    return total, rows


def average_precision(scores: Tensor, labels: Tensor) -> float | None:
    """AP of one predicate (tied scores are one threshold, as scikit-learn); None: no positive."""
    truth = labels.bool().flatten()
    if not bool(truth.any()):
        return None
    scores = scores.flatten().double()
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], truth[order].double()
    tp, fp = y.cumsum(0), (1 - y).cumsum(0)
    last = torch.cat([torch.nonzero(s[1:] != s[:-1]).flatten(), torch.tensor([len(s) - 1])])
    tps, fps = tp[last], fp[last]
    precision, recall = tps / (tps + fps), tps / tps[-1]
    previous = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
    return float(((recall - previous) * precision).sum())


@dataclass
class MetricAccumulator:
    """Collects rows of scores and labels over videos; :meth:`result` gives the metric dict."""

    rows: dict[str, list[tuple[Tensor, Tensor]]] = field(
        default_factory=lambda: {"category": [], "unary": [], "binary": []})
    n_videos: int = 0
    n_frames: int = 0

    def add(self, scores: VideoScores, labels: dict[str, Tensor]) -> None:
        """``labels``: 0/1 ``category`` [N, C], ``unary`` [T, N, U], ``binary`` [T, N, N, B]."""
        present = scores.present.bool()
        tracks = present.any(0)
        self.rows["category"].append((scores.category[tracks], labels["category"][tracks]))
        self.rows["unary"].append((scores.unary[present], labels["unary"][present]))
        pair = present[:, :, None] & present[:, None, :]
        pair &= ~torch.eye(present.shape[1], dtype=torch.bool)
        self.rows["binary"].append((scores.binary[pair], labels["binary"][pair]))
        self.n_videos += 1
        self.n_frames += int(present.shape[0])

    def _cat(self, kind: str) -> tuple[Tensor, Tensor]:
        rows = self.rows[kind]
        if not rows:
            return torch.zeros(0, 0), torch.zeros(0, 0)
        return (torch.cat([r[0].detach().float().cpu() for r in rows]),
                torch.cat([r[1].float().cpu() for r in rows]))

    def result(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        cat_s, cat_y = self._cat("category")
        out["category_r1"] = _ratio(*topk_hits(cat_s, cat_y, 1))
        out["category_r5"] = _ratio(*topk_hits(cat_s, cat_y, 5))
        out["unary_r1"] = _ratio(*topk_hits(*self._cat("unary"), 1))
        bin_s, bin_y = self._cat("binary")
        out["binary_r1"] = _ratio(*topk_hits(bin_s, bin_y, 1))
        out["binary_r5"] = _ratio(*topk_hits(bin_s, bin_y, 5))
        out["binary_rprec"] = _ratio(*r_precision(bin_s, bin_y))
        aps = [average_precision(bin_s[:, j], bin_y[:, j]) for j in range(bin_s.shape[1])]
        aps = [a for a in aps if a is not None]
        out["binary_map"] = sum(aps) / len(aps) if aps else 0.0
        out["n_videos"], out["n_frames"] = self.n_videos, self.n_frames
        return {key: out[key] for key in METRIC_KEYS}


def _ratio(hits: float, total: int) -> float:
    return float(hits) / total if total else 0.0
