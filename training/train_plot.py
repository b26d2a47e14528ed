"""PNG plot of the training loss and the validation recall per epoch (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECALL_KEYS = ("category_r1", "unary_r1", "binary_r1", "binary_rprec", "binary_map")


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Left: training loss per epoch; right: validation metrics per epoch (when measured)."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [r["train"].get("loss") for r in history], marker="o", label="total")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.set_yscale("log")
    left.grid(True, alpha=0.3)
    for key in RECALL_KEYS:
        values = [r.get("val", {}).get(key) for r in history]
        if any(v is not None for v in values):
            right.plot(epochs, values, marker="o", label=key)
    right.set_xlabel("epoch")
    right.set_ylabel("validation")
    right.set_ylim(0, 1.02)
    right.grid(True, alpha=0.3)
    if right.lines:
        right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)
