"""Markdown rendering of a bench.gpu_check result (kept apart so the check stays small)."""

from __future__ import annotations


def _fps(value) -> str:
    return "skipped" if value is None else f"{value:,.1f}"


def markdown(result: dict) -> str:
    """The throughput table, then parity, build stages and unavailable backends."""
    env = result["environment"]
    objects = [str(n) for n in result["objects"]]
    lines = [
        f"### GPU check: {result['model']} (3 towers), window {result['window']}, stride 1",
        "",
        f"{env.get('gpu', env['device'])} (compute capability "
        f"{env.get('compute_capability', '-')}), torch {env['torch']}, CUDA {env['cuda']}, "
        f"onnxruntime {env.get('onnxruntime')}, TensorRT: {env.get('tensorrt')}",
        "",
        "Frames per second, steady state (each new frame: crops + preprocessing + encode + "
        "scoring; with several cameras, all their crops share one forward per tower):",
        "",
        "| backend | preprocess | cameras | " + " | ".join(f"{n} obj" for n in objects) + " |",
        "|---|---|---:|" + "---:|" * len(objects),
    ]
    for row in result["throughput"]:
        cells = " | ".join(_fps(row.get(n)) for n in objects)
        lines.append(f"| {row['backend']} | {row['preprocess']} | {row['cameras']} | {cells} |")
    lines += ["", "Parity with torch eager fp32 (real crops, every tower):", "",
              "| backend | max abs diff | min cosine | ok |", "|---|---:|---:|---|"]
    for label, p in result["parity"].items():
        lines.append(f"| {label} | {p['max_abs']:.2e} | {p['min_cos']:.6f} | "
                     f"{'yes' if p['ok'] else 'NO'} |")
    lines += ["", "Stages: " + "; ".join(f"{k}: {v}" for k, v in result["stages"].items())]
    for label, reason in result.get("unavailable", {}).items():
        lines.append(f"- {label} unavailable: {reason}")
    lines.append(f"\nGoal: {result['goal']}.")
    return "\n".join(lines) + "\n"
