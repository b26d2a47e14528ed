"""Windows per second of the streaming predictor on each backend, on CPU, vs torch eager.

    python -m bench.backends [--json PATH] [--model sgclip-vit-b-32] [--objects 4] [--window 8]
        [--windows 8] [--formats onnx,aoti] [--work DIR]

A randomly initialised model of ``--model`` is saved, exported with ``training.export`` (ONNX
and AOTInductor CPU; their parity checks run as part of it) and loaded through
``load_backend`` exactly like the node does. Each backend then drives the predictor over the
same clip (window 8, stride 1: every new frame completes a window, so a window costs one new
frame's crops + preprocessing + one forward per tower + scoring). Rounds alternate between
backends so machine drift hits all alike. Headline: ``best_compiled_ratio`` = windows/s of the
best compiled backend / windows/s of torch eager, measured in this process (goal >= 1.5).
TensorRT is reported unavailable on CPU, with the selector's reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.core import make_clip, time_streaming
from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import write_manifest
from training import export

BACKENDS = ("torch", "onnxruntime", "aoti", "tensorrt")
COMPILED = ("onnxruntime", "aoti", "tensorrt")
GOAL_RATIO = 1.5


def prepare_model(root: Path, model_name: str, formats: str, concepts: str) -> float:
    """Save a seeded random model under ``root/model`` and export it; returns seconds taken."""
    start = time.perf_counter()
    directory = root / "model"
    if not (directory / "manifest.json").is_file():
        save_model(build_model(load_model_config(model_name), seed=0), directory)
        write_manifest(directory, {"model": model_name, "weights": "random init, seed 0"})
    argv = ["--checkpoint", str(directory), "--out", str(directory), "--formats", formats,
            "--aoti-device", "cpu", "--concepts", concepts]
    code = export.main(argv)
    if code != 0:
        raise SystemExit(f"training.export failed with exit code {code}")
    return time.perf_counter() - start


def load_all(root: Path) -> tuple[dict, dict]:
    """{name: backend} that loaded as themselves, and {name: reason} for the others."""
    loaded, missing = {}, {}
    for name in BACKENDS:
        choice = load_backend(name, str(root), "model", "cpu")
        if choice.backend.name == name:
            loaded[name] = choice.backend
        else:
            missing[name] = "; ".join(choice.fallbacks) or f"fell back to {choice.backend.name}"
    return loaded, missing


def measure(loaded: dict, concepts, args) -> dict[str, list[float]]:
    """Per-backend window times over ``args.rounds`` alternating rounds."""
    frames, boxes = make_clip(args.window + args.windows + 1, args.objects)
    times: dict[str, list[float]] = {name: [] for name in loaded}
    for backend in loaded.values():  # warm-up: first calls allocate and tune
        time_streaming(backend, concepts, frames, boxes, args.window, 1)
    per_round = max(1, args.windows // args.rounds)
    for _ in range(args.rounds):
        for name, backend in loaded.items():
            times[name] += time_streaming(backend, concepts, frames, boxes, args.window, per_round)
    return times


def summarise(times: dict, missing: dict) -> dict:
    """windows/s, ratio to torch eager, and the headline."""
    torch_s = statistics.median(times["torch"])
    backends = {}
    for name in BACKENDS:
        if name not in times:
            backends[name] = {"available": False, "reason": missing.get(name, "not measured")}
            continue
        s = statistics.median(times[name])
        backends[name] = {"available": True, "window_s": s, "windows_per_s": 1.0 / s,
                          "ratio_to_torch": torch_s / s, "windows_timed": len(times[name])}
    compiled = {n: backends[n]["ratio_to_torch"] for n in COMPILED if backends[n]["available"]}
    best = max(compiled, key=compiled.get) if compiled else None
    return {"backends": backends, "best_compiled": best,
            "best_compiled_ratio": compiled.get(best, 0.0), "goal_ratio": GOAL_RATIO}


def run(args) -> dict:
    torch.manual_seed(0)
    concepts = load_concepts(args.concepts)
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        export_s = prepare_model(root, args.model, args.formats, args.concepts)
        loaded, missing = load_all(root)
        result = summarise(measure(loaded, concepts, args), missing)
    result.update(
        model=args.model, objects=args.objects, window=args.window, stride=1,
        export_s=export_s, torch_threads=torch.get_num_threads(),
        torch_version=torch.__version__, device="cpu",
    )
    try:
        import onnxruntime

        result["onnxruntime_version"] = onnxruntime.__version__
    except ImportError:
        pass
    return result


def print_table(result: dict) -> None:
    print(f"{result['model']}, {result['objects']} objects, window {result['window']}, "
          f"stride 1, CPU ({result['torch_threads']} torch threads)")
    print(f"{'backend':12s} {'windows/s':>10s} {'ms/window':>10s} {'vs torch':>9s}")
    for name, row in result["backends"].items():
        if row["available"]:
            print(f"{name:12s} {row['windows_per_s']:10.3f} {row['window_s'] * 1e3:10.1f} "
                  f"{row['ratio_to_torch']:8.2f}x")
        else:
            print(f"{name:12s} {'unavailable':>10s}  {row['reason']}")
    print(f"best_compiled_ratio {result['best_compiled_ratio']:.2f} ({result['best_compiled']}; "
          f"goal >= {GOAL_RATIO})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--model", default="sgclip-vit-b-32", help="model config name")
    parser.add_argument("--concepts", default="config/concepts/shapes.yaml")
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--windows", type=int, default=8, help="windows timed per backend")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--formats", default="onnx,aoti", help="what training.export makes")
    parser.add_argument("--work", help="keep the model and exports here (default: temporary)")
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
