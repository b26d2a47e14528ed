"""Peak memory of one frame's pair crops at the largest allowed cap, against a cap of 1.

    python -m bench.crop_memory [--json PATH] [--max-objects 64] [--max-crops 1024]
        [--frames 1] [--crop-chunk N] [--model untrained-tiny]

A fresh subprocess builds the predictor (CPU; the untrained tiny model, or a model config name
such as sgclip-vit-b-32 with random weights), encodes a small warm-up frame, then a 640x480
frame with --max-objects regions: first with max_crops_per_frame=1 (baseline: the object crops
and a single pair crop), then --frames frames with --max-crops. Each figure is the peak RSS
(ru_maxrss) after that run minus the RSS before the baseline, in MiB: `baseline_peak_rss_mb`,
`peak_rss_mb` (the worst case) and their ratio `peak_rss_ratio`. `pair_crops` /
`pairs_capped` are per measured frame. --crop-chunk overrides the encoder's crops per forward
(a large value shows the cost without chunking).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench import report
from sgclip_ros.core import frame_encoder
from sgclip_ros.core.backend import TorchBackend
from sgclip_ros.core.backend_select import UNTRAINED_TINY, load_backend
from sgclip_ros.core.concepts import load_concepts
from sgclip_ros.core.model import build_model
from sgclip_ros.core.model_config import load_model_config
from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
from sgclip_ros.core.regions import Region
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.core.window import WindowConfig

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 640, 480


def make_frame(n_objects: int, seed: int = 0):
    """A light frame with ``n_objects`` solid squares at random places, and their regions."""
    rng = np.random.default_rng(seed)
    image = np.full((HEIGHT, WIDTH, 3), 235, np.uint8)
    regions = []
    for k in range(n_objects):
        size = int(rng.integers(40, 110))
        x, y = int(rng.integers(0, WIDTH - size)), int(rng.integers(0, HEIGHT - size))
        color = tuple(int(c) for c in rng.integers(0, 200, 3))
        cv2.rectangle(image, (x, y), (x + size - 1, y + size - 1), color, -1)
        regions.append(Region(Box(x, y, x + size, y + size), track_id=str(k)))
    return image, regions


def _rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _backend(model: str):
    if model == UNTRAINED_TINY:
        return load_backend("torch", "", UNTRAINED_TINY, "cpu").backend
    return TorchBackend(build_model(load_model_config(model), seed=0), model)


def _predictor(args) -> SGClipPredictor:
    if args.crop_chunk:
        frame_encoder.CROP_CHUNK = args.crop_chunk  # read when the encoder is built
    concepts = load_concepts(str(REPO / "config" / "concepts" / "shapes.yaml"))
    config = PredictorConfig(window=WindowConfig(size=1), max_objects=args.max_objects)
    return SGClipPredictor(_backend(args.model), concepts, config)


def _encode(predictor, cap: int, frames: list, first_stamp: int) -> tuple[int, int]:
    """Encode ``frames`` under ``cap``; (pair crops, pairs capped) of the last one."""
    predictor.set_max_crops_per_frame(cap)
    stats = predictor.stats.encode
    for t, (image, regions) in enumerate(frames):
        crops, capped = stats.pair_crops, stats.pairs_capped
        predictor.add_frame("cam", image, first_stamp + t, regions)
    return stats.pair_crops - crops, stats.pairs_capped - capped


def measure(args) -> dict:
    """Run in a fresh process: baseline (cap 1) then the worst case, peaks over one start."""
    predictor = _predictor(args)
    image, regions = make_frame(2, seed=1)
    predictor.add_frame("warmup", image, 1, regions)  # first-call allocations are not counted
    frames = [make_frame(args.max_objects, seed=t) for t in range(args.frames)]
    gc.collect()
    start = _rss_bytes()
    figures = {}
    runs = (("baseline", 1, frames[:1], 1), ("worst", args.max_crops, frames, 2))
    for name, cap, run_frames, stamp in runs:
        pair_crops, pairs_capped = _encode(predictor, cap, run_frames, stamp)
        figures[name] = {
            "peak_rss_mb": (_peak_bytes() - start) / 2**20,
            "pair_crops": pair_crops,
            "pairs_capped": pairs_capped,
        }
    figures["crop_chunk"] = args.crop_chunk or frame_encoder.CROP_CHUNK
    return figures


def run(args) -> dict:
    """Measure in a fresh subprocess, so no earlier work has raised the peak already."""
    cmd = [sys.executable, "-m", "bench.crop_memory", "--child",
           "--max-objects", str(args.max_objects), "--max-crops", str(args.max_crops),
           "--frames", str(args.frames), "--crop-chunk", str(args.crop_chunk),
           "--model", args.model]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    worst, baseline = figures["worst"], figures["baseline"]
    return {
        "peak_rss_mb": worst["peak_rss_mb"],
        "baseline_peak_rss_mb": baseline["peak_rss_mb"],
        "peak_rss_ratio": worst["peak_rss_mb"] / max(baseline["peak_rss_mb"], 1e-9),
        "pair_crops": worst["pair_crops"],
        "pairs_capped": worst["pairs_capped"],
        "baseline_pair_crops": baseline["pair_crops"],
        "max_objects": args.max_objects,
        "max_crops_per_frame": args.max_crops,
        "frames": args.frames,
        "crop_chunk": figures["crop_chunk"],
        "frame": f"{WIDTH}x{HEIGHT}",
        "model": args.model,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--max-objects", type=int, default=64)
    parser.add_argument("--max-crops", type=int, default=1024, help="max_crops_per_frame")
    parser.add_argument("--frames", type=int, default=1, help="frames encoded at --max-crops")
    parser.add_argument("--crop-chunk", type=int, default=0, help="crops per forward (0: default)")
    parser.add_argument("--model", default=UNTRAINED_TINY,
                        help=f"{UNTRAINED_TINY} or a model config name (random weights)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return 0
    result = run(args)
    report(result, args.json, width=24)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
