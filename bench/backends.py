"""Windows per second of the streaming predictor on each backend, on CPU, vs torch eager.

    python -m bench.backends [--json PATH] [--model sgclip-vit-b-32] [--objects 4] [--window 8]
        [--windows 8] [--formats onnx,onnx-int8,aoti] [--precision fp32,fp16] [--work DIR]
        [--shipped models/shapes_default]

A randomly initialised model of ``--model`` is saved, exported with ``training.export`` (ONNX
and AOTInductor CPU; their parity checks run as part of it) and loaded through
``load_backend`` exactly like the node does. Each backend then drives the predictor over the
same clip (window 8, stride 1: every new frame completes a window, so a window costs one new
frame's crops + preprocessing + one forward per tower + scoring). Rounds alternate between
backends so machine drift hits all alike. Headline: ``best_compiled_ratio`` = windows/s of the
best compiled backend / windows/s of torch eager, measured in this process (goal >= 1.5).
TensorRT is reported unavailable on CPU, with the selector's reason.

Reduced precision (measured on ``--model`` and on the shipped, trained ``--shipped`` model):
``int8_ratio_to_onnxruntime`` = windows/s of ``onnxruntime-int8`` / windows/s of fp32
``onnxruntime`` (goal >= 1.8; int8 is not one of the compiled backends of the headline above,
it trades accuracy), ``int8_encoder_ratio_to_onnxruntime`` the same for the encoders alone (one
frame's crops through every tower); both of medians, and ``..._best`` of the fastest run of
each (steadier when other jobs share the machine). ``int8_min_cos`` / ``fp16_min_cos``: the
worst cosine of an int8 / fp16 ONNX embedding to torch eager fp32 over ShapesWorld object and
pair crops (every tower) and the concept list's texts (every text tower).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.core import make_clip, time_floor, time_streaming
from sgclip_ros.core import scoring
from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.backends.artefacts import load_artefacts, subdir_for
from sgclip_ros.core.backends.parity import compare
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.io_spec import TEXT, encoder_specs
from sgclip_ros.core.model import build_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import write_manifest
from training import export
from training.export_common import shapes_world_pixels

BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "aoti", "tensorrt")
# The fp32-class compiled backends of the headline; int8 is measured against onnxruntime.
COMPILED = ("onnxruntime", "aoti", "tensorrt")
INT8 = "onnxruntime-int8"
GOAL_RATIO = 1.5
INT8_GOAL_RATIO = 1.8
SHIPPED = "models/shapes_default"


def run_export(checkpoint: Path, out: Path, formats: str, concepts: str, precision: str) -> None:
    """``training.export`` (CPU targets); SystemExit naming the exit code if it failed."""
    argv = ["--checkpoint", str(checkpoint), "--out", str(out), "--formats", formats,
            "--precision", precision, "--aoti-device", "cpu", "--concepts", concepts]
    code = export.main(argv)
    if code != 0:
        raise SystemExit(f"training.export failed with exit code {code}")


def prepare_model(root: Path, model_name: str, formats: str, concepts: str,
                  precision: str = "fp32") -> float:
    """Save a seeded random model under ``root/model`` and export it; returns seconds taken."""
    start = time.perf_counter()
    directory = root / "model"
    if not (directory / "manifest.json").is_file():
        save_model(build_model(load_model_config(model_name), seed=0), directory)
        write_manifest(directory, {"model": model_name, "weights": "random init, seed 0"})
    run_export(directory, directory, formats, concepts, precision)
    return time.perf_counter() - start


def load_all(root: Path, model_dir: str = "model", names=BACKENDS) -> tuple[dict, dict]:
    """{name: backend} that loaded as themselves, and {name: reason} for the others."""
    loaded, missing = {}, {}
    for name in names:
        choice = load_backend(name, str(root), model_dir, "cpu")
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


def ratios(times: dict) -> tuple[float | None, float | None]:
    """fp32 onnxruntime time / int8 time: of the medians, and of the fastest runs (the latter
    is the steadier figure on a machine that other jobs load now and then)."""
    if INT8 not in times or "onnxruntime" not in times:
        return None, None
    fp32, int8 = times["onnxruntime"], times[INT8]
    return statistics.median(fp32) / statistics.median(int8), min(fp32) / min(int8)


def encoder_times(loaded: dict, args) -> dict[str, list[float]]:
    """Encoders alone: one frame's crops through every tower, onnxruntime and int8 alternating."""
    if INT8 not in loaded or "onnxruntime" not in loaded:
        return {}
    frames, boxes = make_clip(1, args.objects)
    times = {name: [] for name in ("onnxruntime", INT8)}
    for name in times:  # warm-up
        time_floor(loaded[name], frames, boxes, 1)
    for _ in range(args.rounds):
        for name in times:
            times[name] += time_floor(loaded[name], frames, boxes, max(2, args.windows // 2))
    return times


def _min_cos(reference, backend, pixels, tokens, precision: str) -> dict:
    """Worst cosine of ``backend``'s embeddings to ``reference``'s, images and texts apart."""
    image = min(compare(reference.encode_images(t, pixels), backend.encode_images(t, pixels),
                        precision).min_cos for t in range(backend.towers))
    text_specs = [s for s in encoder_specs(backend.config) if s.kind == TEXT]
    text = min(compare(reference.encode_texts(s.tower, tokens), backend.run_encoder(s, tokens),
                       precision).min_cos for s in text_specs)
    return {"min_cos": min(image, text), "image_min_cos": image, "text_min_cos": text,
            "crops": len(pixels), "texts": len(tokens)}


def fp16_backend(root: Path, model_dir: str, reference):
    """The fp16 ONNX graphs (``onnx_fp16/``) on ONNX Runtime's CPU provider, or None."""
    from sgclip_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    directory = root / model_dir / subdir_for("onnx", precision="fp16")
    if not directory.is_dir():
        return None
    art = load_artefacts(root, model_dir, directory.name, "onnx", reference.config,
                         reference.model_id)
    return OnnxRuntimeBackend(art, "cpu")


def quality(root: Path, model_dir: str, loaded: dict, concepts) -> dict:
    """int8 and fp16 ONNX vs torch eager fp32 on ShapesWorld crops and the concept texts
    (text towers run on every text, not looked up among the precomputed embeddings)."""
    reference = loaded["torch"]
    pixels = shapes_world_pixels(reference.config)
    texts = scoring.category_texts(concepts) + scoring.unary_texts(concepts)
    tokens = reference.tokenize(texts + scoring.binary_texts(concepts))
    out = {}
    if INT8 in loaded:
        out["int8"] = _min_cos(reference, loaded[INT8], pixels, tokens, "int8")
    fp16 = fp16_backend(root, model_dir, reference)
    if fp16 is not None:
        out["fp16"] = _min_cos(reference, fp16, pixels, tokens, "fp16")
    return out


def reduced_figures(times: dict, loaded: dict, missing: dict, cosines: dict, args) -> dict:
    """The int8 and fp16 headline figures of one model (None where not measured)."""
    window, window_best = ratios(times)
    encoder, encoder_best = ratios(encoder_times(loaded, args))
    return {
        "int8_ratio_to_onnxruntime": window,
        "int8_ratio_to_onnxruntime_best": window_best,
        "int8_encoder_ratio_to_onnxruntime": encoder,
        "int8_encoder_ratio_to_onnxruntime_best": encoder_best,
        "int8_min_cos": cosines.get("int8", {}).get("min_cos"),
        "fp16_min_cos": cosines.get("fp16", {}).get("min_cos"),
        "int8_unavailable": None if INT8 in loaded else missing.get(INT8, "not exported"),
        "cosines": cosines,
    }


def shipped_figures(root: Path, args, concepts) -> dict:
    """int8/fp16 figures of the shipped, trained model (exported into ``root/shipped``)."""
    source = Path(args.shipped)
    run_export(source, root / "shipped", "onnx,onnx-int8", args.concepts, "fp32,fp16")
    names = ("torch", "onnxruntime", INT8)
    loaded, missing = load_all(root, "shipped", names)
    times = measure(loaded, concepts, args)
    rows = {n: statistics.median(t) for n, t in times.items()}
    result = reduced_figures(times, loaded, missing, quality(root, "shipped", loaded, concepts),
                             args)
    return {"model_dir": str(source), "model": loaded["torch"].config.name,
            "window_s": rows, **result}


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
        export_s = prepare_model(root, args.model, args.formats, args.concepts, args.precision)
        loaded, missing = load_all(root)
        times = measure(loaded, concepts, args)
        result = summarise(times, missing)
        result.update(reduced_figures(times, loaded, missing,
                                      quality(root, "model", loaded, concepts), args))
        result["int8_goal_ratio"] = INT8_GOAL_RATIO
        if args.shipped:
            result["shipped"] = shipped_figures(root, args, concepts)
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
    rows = [(result["model"], result)]
    if "shipped" in result:
        rows.append((result["shipped"]["model_dir"], result["shipped"]))
    for label, figures in rows:
        print(f"{label}: " + ", ".join(f"{key} {_shown(figures[key])}" for key in (
            "int8_ratio_to_onnxruntime", "int8_ratio_to_onnxruntime_best",
            "int8_encoder_ratio_to_onnxruntime", "int8_encoder_ratio_to_onnxruntime_best",
            "int8_min_cos", "fp16_min_cos")) + f" (int8 goal >= {INT8_GOAL_RATIO})")
        if figures.get("int8_unavailable"):
            print(f"  int8 unavailable: {figures['int8_unavailable']}")


def _shown(value) -> str:
    return "n/a" if value is None else f"{value:.4f}" if value < 1 else f"{value:.2f}"


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
    parser.add_argument("--formats", default="onnx,onnx-int8,aoti",
                        help="what training.export makes")
    parser.add_argument("--precision", default="fp32,fp16",
                        help="ONNX precisions training.export makes (fp16: fp16_min_cos)")
    parser.add_argument("--shipped", default=SHIPPED,
                        help="trained model directory also measured for int8/fp16 ('': skip)")
    parser.add_argument("--work", help="keep the model and exports here (default: temporary)")
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
