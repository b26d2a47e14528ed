"""GPU check: build what this machine supports, check parity with torch, measure frames/s.

    python -m bench.gpu_check --out gpu_check [--budget-s 420] [--model sgclip-vit-b-32]
    python -m bench.gpu_check --dry-run --out /tmp/gc    # CPU, tiny model: checks the script

Stages (each timed; optional ones are skipped with a reason when the budget runs short):
ONNX export (fp32) -> fp16 ONNX export (``training.export --precision fp16``: fp16 weights and
compute, float32 I/O, the input of strongly typed TensorRT) -> AOTInductor CUDA packages (fp16)
-> TensorRT engines from the fp16 ONNX if ``tensorrt`` imports (10.x or 11.x, strongly typed;
the API facts of the installed TensorRT are recorded) -> load every backend the machine supports
-> parity of each against torch eager fp32 on real crops, plus the fp16 ONNX image encoders in
ONNX Runtime under each present provider (TensorRT, CUDA, CPU) -> frames per second of the
streaming predictor (window 8, stride 1: one frame's crops + preprocessing + one forward per
tower + scoring) for 1, 4 and 8 objects, for one stream and for ``--cameras`` streams fed
together (their crops share one forward per tower).
Writes ``<out>.json`` and ``<out>.md`` and prints the markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.core import make_clip
from bench.gpu_report import markdown
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backend_select import load_backend
from sgclip_ros.core.backends.artefacts import BackendUnavailable, load_artefacts
from sgclip_ros.core.backends.parity import compare
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.io_spec import COMPUTE_DTYPES, encoder_specs
from sgclip_ros.core.model import build_model, load_model, save_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.model_store import (
    ModelFileError,
    model_id,
    verify_model_dir,
    write_manifest,
)
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.window import WindowConfig
from training.export_common import parity_pixels

REPO = Path(__file__).resolve().parent.parent
CONCEPTS = str(REPO / "config" / "concepts" / "household.yaml")
# Where ``training.export --precision fp16`` writes the fp16 graphs inside a model directory
# (next to the fp32 ``onnx/``); TensorRT engines are built from them into ``tensorrt/``.
FP16_ONNX = "onnx_fp16"
# ONNX Runtime providers the fp16 ONNX is checked under, when this onnxruntime has them.
ORT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# Names whose presence tells TensorRT 10.x from 11.x (11.x removed the weak-typing ones);
# recorded so a GPU session can compare the real module with test/trt_standins.py.
TRT_API_PROBES = (
    ("BuilderFlag", "FP16"), ("BuilderFlag", "BF16"), ("BuilderFlag", "INT8"),
    ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"), ("BuilderFlag", "VERSION_COMPATIBLE"),
    ("Builder", "platform_has_fast_fp16"), ("Builder", "platform_has_fast_int8"),
    ("Builder", "platform_has_tf32"), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
    ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
    ("HardwareCompatibilityLevel", "AMPERE_PLUS"), ("IBuilderConfig", "create_timing_cache"),
    ("IBuilderConfig", "set_timing_cache"), ("IBuilderConfig", "hardware_compatibility_level"),
    ("Runtime", "engine_host_code_allowed"), ("IExecutionContext", "execute_async_v3"),
)


class CastTorchBackend(TorchBackend):
    """Torch eager with the towers cast to fp16/bf16 (inputs cast on the way in)."""

    def __init__(self, model, model_id: str, device: str, precision: str):
        super().__init__(model, model_id, device)
        self.dtype = COMPUTE_DTYPES[precision]
        self.model.to(self.dtype)
        self.name = f"torch-{precision}"

    @torch.inference_mode()
    def encode_images(self, tower, pixels):
        x = pixels.to(self._device, self.dtype)
        return self.model.towers[tower].encode_image(x, normalize=True).float().cpu()


class Budget:
    """Seconds left of the check's time budget."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": device,
            "python": platform.python_version(), "cpu": platform.processor() or "unknown"}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        info["compute_capability"] = f"{major}.{minor}"
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
        info["tensorrt_api"] = tensorrt_api(tensorrt)
    except ImportError as exc:
        info["tensorrt"] = f"not importable ({exc})"
    return info


def tensorrt_api(trt) -> dict:
    """{"Class.NAME": present} for TRT_API_PROBES on the installed TensorRT."""
    facts = {}
    for owner, name in TRT_API_PROBES:
        holder = getattr(trt, owner, None)
        facts[f"{owner}.{name}"] = holder is not None and hasattr(holder, name)
    return facts


def run_stage(name: str, argv: list[str], budget: Budget, stages: dict, reserve: float) -> None:
    """Run ``python -m <argv>`` with what the budget leaves after ``reserve`` seconds."""
    allowed = budget.left() - reserve
    if allowed < 30:
        stages[name] = f"skipped: {budget.left():.0f} s left, {reserve:.0f} s kept for measuring"
        return
    start = time.perf_counter()
    try:
        code = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, timeout=allowed).returncode
    except subprocess.TimeoutExpired:
        stages[name] = f"stopped after {allowed:.0f} s (budget)"
        return
    seconds = time.perf_counter() - start
    stages[name] = f"{seconds:.0f} s" if code == 0 else f"FAILED (exit {code}, {seconds:.0f} s)"


def build_artefacts(root: Path, args, budget: Budget, stages: dict) -> None:
    """Model + exports, each stage in a subprocess bounded by the budget."""
    directory = root / "model"
    save_model(build_model(load_model_config(args.model), seed=0), directory)
    write_manifest(directory, {"model": args.model, "weights": "random init, seed 0"})
    common = ["training.export", "--checkpoint", str(directory), "--out", str(directory),
              "--concepts", CONCEPTS]
    run_stage("onnx export", common + ["--formats", "onnx"], budget, stages, args.reserve_s)
    # A stage of its own, so the fp32 graphs above do not depend on the fp16 conversion.
    run_stage("onnx fp16 export", common + ["--formats", "onnx", "--precision", "fp16"],
              budget, stages, args.reserve_s)
    if not args.device.startswith("cuda"):
        return
    run_stage("aoti cuda fp16 export", common + ["--formats", "aoti", "--aoti-device", "cuda",
                                                 "--cuda-precision", "fp16"],
              budget, stages, args.reserve_s)
    build_tensorrt(root, args, budget, stages)


def build_tensorrt(root: Path, args, budget: Budget, stages: dict) -> None:
    """Strongly typed TensorRT engines from the fp16 ONNX (TensorRT 10.x or 11.x)."""
    if importlib.util.find_spec("tensorrt") is None:
        stages["tensorrt build"] = "skipped: the tensorrt package is not installed"
        return
    onnx_dir = root / "model" / FP16_ONNX
    if not (onnx_dir / "manifest.json").is_file():
        stages["tensorrt build"] = "skipped: no fp16 ONNX (see the onnx fp16 export stage)"
        return
    # --fp16 makes build_engine refuse anything but an fp16 graph: precision is the ONNX's own.
    run_stage("tensorrt fp16 build (strongly typed)",
              ["training.build_engine", "--onnx", str(onnx_dir), "--fp16"],
              budget, stages, args.reserve_s)


def load_backends(root: Path, args) -> tuple[dict, dict]:
    """{label: backend} for everything this machine runs, {label: reason} for the rest."""
    directory = root / "model"
    mid = "bench"
    backends = {"torch eager fp32": TorchBackend(load_model(directory), mid, args.device)}
    for precision in ("fp16", "bf16"):
        backends[f"torch eager {precision}"] = CastTorchBackend(
            load_model(directory), mid, args.device, precision)
    missing = {}
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    for name, label in (("aoti", f"aoti {kind}"), ("onnxruntime", f"onnxruntime {kind}"),
                        ("tensorrt", "tensorrt (from fp16 ONNX, strongly typed)")):
        choice = load_backend(name, str(root), "model", args.device)
        if choice.backend.name == name:
            precision = getattr(choice.backend, "precision", "fp32")
            backends[f"{label} {precision}"] = choice.backend
        else:
            missing[label] = "; ".join(choice.fallbacks)
    label = f"onnxruntime {kind} (fp16 ONNX)"
    try:
        backends[f"{label} fp16"] = fp16_onnx_backend(root, backends["torch eager fp32"], args)
    except (BackendUnavailable, ModelFileError, FileNotFoundError) as exc:
        missing[label] = str(exc)
    return backends, missing


def fp16_onnx_backend(root: Path, reference, args):
    """The fp16 ONNX graphs on the project's ONNX Runtime backend (CUDA provider on a GPU)."""
    from sgclip_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    if not (root / "model" / FP16_ONNX).is_dir():
        raise FileNotFoundError(f"no {FP16_ONNX}/ (see the onnx fp16 export stage)")
    mid = model_id(verify_model_dir(root, "model"))
    art = load_artefacts(root, "model", FP16_ONNX, "onnx", reference.config, mid)
    return OnnxRuntimeBackend(art, args.device)


def ort_provider_parity(root: Path, budget: Budget, reserve: float) -> dict:
    """fp16 ONNX image encoders in ONNX Runtime, per present provider, vs torch eager fp32.

    The project's onnxruntime backend uses the CUDA or CPU provider; this also covers ONNX
    Runtime's TensorRT provider (which builds its own engines at session creation). Each
    provider runs in a child process (``--ort-provider``) bounded by the budget, so one that
    crashes or hangs is reported instead of ending the check.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"skipped": f"onnxruntime not importable ({exc})"}
    if not (root / "model" / FP16_ONNX / "manifest.json").is_file():
        return {"skipped": "no fp16 ONNX (see the onnx fp16 export stage)"}
    present = set(ort.get_available_providers())
    return {provider: _provider_child(root, provider, budget.left() - reserve)
            for provider in ORT_PROVIDERS if provider in present}


def _provider_child(root: Path, provider: str, allowed: float) -> dict:
    """Run ``--ort-provider PROVIDER`` in a child process; its JSON, or why there is none."""
    if allowed < 30:
        return {"skipped": f"{allowed:.0f} s of budget left for it"}
    out = root / f"ort-{provider}"
    argv = [sys.executable, "-m", "bench.gpu_check", "--ort-provider", provider,
            "--work", str(root), "--out", str(out)]
    try:
        code = subprocess.run(argv, cwd=REPO, timeout=allowed).returncode
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {allowed:.0f} s (budget)"}
    if code != 0:
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        return {"error": f"the check process ended with {how}"}
    return json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))


def provider_check(args) -> int:
    """``--ort-provider``: one provider's parity on the fp16 image encoders, to <out>.json."""
    import onnxruntime as ort

    from sgclip_ros.core.backends.onnxruntime_backend import disabled_optimizers

    root = Path(args.work)
    reference = TorchBackend(load_model(root / "model"), "bench", "cpu")
    config = reference.config
    pixels = parity_pixels(config)
    results = []
    start = time.perf_counter()
    for spec in (s for s in encoder_specs(config) if s.kind == "image"):
        path = root / "model" / FP16_ONNX / spec.filename("onnx")
        # Same optimizer exclusions as the node's onnxruntime backend for fp16 graphs.
        session = ort.InferenceSession(str(path), providers=[args.ort_provider],
                                       disabled_optimizers=disabled_optimizers("fp16"))
        if session.get_providers()[0] != args.ort_provider:  # ORT fell back silently
            results = f"{spec.name}: onnxruntime gave providers {session.get_providers()}"
            break
        (got,) = session.run([spec.output.name], {spec.input.name: pixels.numpy()})
        results.append(compare(reference.encode_images(spec.tower, pixels),
                               torch.from_numpy(got), "fp16"))
    if isinstance(results, str):
        result = {"error": results}
    else:
        result = {"max_abs": max(r.max_abs for r in results),
                  "min_cos": min(r.min_cos for r in results),
                  "ok": all(r.ok for r in results),
                  "seconds": round(time.perf_counter() - start, 1)}
    Path(f"{args.out}.json").write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


def parity(backends: dict, config) -> dict:
    """Each backend vs torch eager fp32 on real crops, per tower."""
    pixels = parity_pixels(config)
    reference = backends["torch eager fp32"]
    out = {}
    for label, backend in backends.items():
        precision = label.rsplit(" ", 1)[-1]
        results = [compare(reference.encode_images(t, pixels), backend.encode_images(t, pixels),
                           precision) for t in range(config.towers)]
        out[label] = {"max_abs": max(r.max_abs for r in results),
                      "min_cos": min(r.min_cos for r in results),
                      "ok": all(r.ok for r in results), "precision": precision}
    return out


def frames_per_second(backend, concepts, objects: int, mode: str, cameras: int, args) -> float:
    """Steady-state frames/s over ``cameras`` streams fed together (one forward per tower)."""
    frames, boxes = make_clip(args.window + args.frames, objects, seed=objects)
    config = PredictorConfig(window=WindowConfig(size=args.window), preprocess=mode,
                             max_objects=max(16, objects))
    predictor = SGClipPredictor(backend, concepts, config)
    names = [f"cam{c}" for c in range(cameras)]
    times = []
    deadline = time.monotonic() + args.point_s
    for t, (frame, frame_boxes) in enumerate(zip(frames, boxes)):
        regions = [Region(Box(*map(float, b)), track_id=str(k)) for k, b in enumerate(frame_boxes)]
        inputs = [FrameInput(name, frame, (t + 1) * 10**8, regions) for name in names]
        start = time.perf_counter()
        predictor.add_frames(inputs)
        if t >= args.window:  # the first window fills the window and warms up
            times.append(time.perf_counter() - start)
            if time.monotonic() > deadline and len(times) >= 3:
                break
    return cameras / statistics.median(times)


def _points(backends: dict, args) -> list[tuple[str, str, int]]:
    """(backend, preprocess, cameras) rows: every backend fast, torch fp16 exact too."""
    rows = []
    for label in backends:
        rows.append((label, "fast", 1))
        if label == "torch eager fp16":
            rows.append((label, "exact", 1))
        if args.cameras > 1:
            rows.append((label, "fast", args.cameras))
    return rows


def throughput(backends: dict, args, budget: Budget) -> list[dict]:
    concepts = load_concepts(CONCEPTS)
    rows = []
    for label, mode, cameras in _points(backends, args):
        row = {"backend": label, "preprocess": mode, "cameras": cameras}
        for n in args.objects:
            enough = budget.left() >= 15
            row[str(n)] = (frames_per_second(backends[label], concepts, n, mode, cameras, args)
                           if enough else None)
        rows.append(row)
    return rows


def run(args) -> dict:
    budget = Budget(args.budget_s)
    result = {"model": args.model, "window": args.window, "objects": args.objects,
              "environment": environment(args.device), "stages": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        build_artefacts(root, args, budget, result["stages"])
        backends, result["unavailable"] = load_backends(root, args)
        config = next(iter(backends.values())).config
        result["parity"] = parity(backends, config)
        result["ort_fp16_providers"] = ort_provider_parity(root, budget, args.reserve_s / 2)
        result["throughput"] = throughput(backends, args, budget)
    result["goal"] = "4 objects: >= 1000 frames/s on an H100/H200 class GPU"
    return result


def fp16_markdown(result: dict) -> str:
    """The fp16-ONNX provider table and the TensorRT API facts (gpu_report renders the rest)."""
    lines = ["", "fp16 ONNX image encoders in ONNX Runtime, per provider, vs torch eager fp32:", "",
             "| provider | max abs diff | min cosine | ok |", "|---|---:|---:|---|"]
    for name, p in result["ort_fp16_providers"].items():
        if isinstance(p, dict) and "min_cos" in p:
            lines.append(f"| {name} | {p['max_abs']:.2e} | {p['min_cos']:.6f} | "
                         f"{'yes' if p['ok'] else 'NO'} |")
        else:
            lines.append(f"| {name} | {p} | | |")
    api = result["environment"].get("tensorrt_api")
    if api:
        present = ", ".join(k for k, v in api.items() if v) or "none"
        absent = ", ".join(k for k, v in api.items() if not v) or "none"
        lines += ["", f"TensorRT API present: {present}.", f"TensorRT API absent: {absent}."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_check", help="writes <out>.json and <out>.md")
    parser.add_argument("--model", default="sgclip-vit-b-32")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--objects", default="1,4,8")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--cameras", type=int, default=8,
                        help="also measure this many streams batched together (1: skip)")
    parser.add_argument("--frames", type=int, default=40, help="frames per point, at most")
    parser.add_argument("--point-s", type=float, default=3.0, help="seconds per point, about")
    parser.add_argument("--reserve-s", type=float, default=150.0,
                        help="seconds kept for loading and measuring after the builds")
    parser.add_argument("--work", help="keep the model and artefacts here")
    parser.add_argument("--dry-run", action="store_true", help="CPU, sgclip-tiny, short")
    parser.add_argument("--ort-provider", help=argparse.SUPPRESS)  # the child of the check
    args = parser.parse_args(argv)
    args.objects = [int(n) for n in args.objects.split(",")]
    if args.ort_provider:
        if not args.work:
            parser.error("--ort-provider needs --work")
        args.device = "cpu"  # the reference; the provider picks its own device
    elif args.dry_run:
        args.model, args.device, args.frames, args.point_s = "sgclip-tiny", "cpu", 4, 0.5
        args.cameras = min(args.cameras, 2)
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device (use --dry-run to check the script on a CPU)")
        args.device = "cuda"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.ort_provider:
        return provider_check(args)
    result = run(args)
    text = markdown(result) + fp16_markdown(result)
    print(text)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    Path(f"{args.out}.md").write_text(text, encoding="utf-8")
    bad = [label for label, p in result["parity"].items() if not p["ok"]]
    bad += [name for name, p in result["ort_fp16_providers"].items()
            if isinstance(p, dict) and p.get("ok") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
