"""Geometry from aligned depth against known 3D truth: the synthetic RGB-D ShapesWorld.

    python -m bench.geometry --json PATH [--clips 60] [--frames 6] [--seed 0] [--check]
        [--width 640 --height 480] [--pitch-deg 5] [--noise 0.01] [--missing 0.2]

Clip i is ``render_rgbd_clip(seed + i)`` (sgclip_ros.sim.rgbd_scene: solids 0.5-5 m from a
pitched camera, stacks, neighbours, objects behind others, slow motion; ground truth from
metric_relations on the true geometry, no fact within 25% of its threshold). Every frame's depth
gets Gaussian noise of --noise x depth and --missing of its pixels dropped (NaN), then:

- ``centroid_err_*``: |estimated centroid - true visible-surface centroid| / that centroid's
  distance from the camera, per object per frame. The estimate is ``object_geometry(depth, K,
  true 2D box)`` without a mask (the box's inner part, as with a detector's box); ``*_mask``
  uses the true mask instead. ``centroid_err_solid_median``: against the solid's centre (the
  surface is nearer than the centre by up to half the object's depth).
- ``relation_precision`` / ``relation_recall``: metric_relations of the estimates (box, and
  ``*_mask``) against the truth, micro-averaged over (subject, predicate, object, frame) facts;
  ``relations_by_predicate`` gives true / tp / fp / fn per predicate.
- ``proposer_recall``: the share of objects (all show >= 100 px) matched one-to-one by a
  DepthProposer region with box IoU >= 0.5, given the depth and the colour frame as the node
  gives them; ``proposer_precision``: the share of regions matched;
  ``proposer_recall_depth_only``: the recall without the colour frame.
  ``proposer_recall_not_stacked``: the same without the objects of a stack (resting on or
  carrying another solid, which the proposer documents as merged).
- ``geometry_ms_per_frame_10_objects``: object_geometry for 10 boxes plus metric_relations on
  one frame (median of repeats); ``depth_added_ms_per_frame``: that plus decoding the frame's
  16UC1 depth message, i.e. what depth adds to a frame in the node (the model's time is
  unchanged); ``proposer_ms_per_frame``: median over all frames.

Goal (--check exits 1 otherwise): centroid_err_median <= 0.03, centroid_err_p95 <= 0.08,
relation_precision >= 0.95, relation_recall >= 0.95, proposer_recall >= 0.90,
depth_added_ms_per_frame <= 5.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np

from bench import report
from sgclip_ros.core.depth_proposer import DepthProposer, DepthProposerSettings
from sgclip_ros.core.geometry import GEOMETRY_PREDICATES, metric_relations, object_geometry
from sgclip_ros.ros.depth_input import decode_depth
from sgclip_ros.sim.rgbd_scene import add_depth_noise, depth_to_mm, render_rgbd_clip

GOALS = (  # (figure, comparison, bound)
    ("centroid_err_median", "<=", 0.03),
    ("centroid_err_p95", "<=", 0.08),
    ("relation_precision", ">=", 0.95),
    ("relation_recall", ">=", 0.95),
    ("proposer_recall", ">=", 0.90),
    ("depth_added_ms_per_frame", "<=", 5.0),
)
MATCH_IOU = 0.5
TIMING_OBJECTS = 10
TIMING_REPEATS = 30


class Tally:
    """Running counts over all clips and frames."""

    def __init__(self):
        self.errors: dict[str, list[float]] = {"box": [], "mask": [], "solid": []}
        self.distances: list[float] = []
        self.missing = Counter()  # objects without an estimate, per method
        self.facts = {m: Counter() for m in ("true", "tp_box", "fp_box", "tp_mask", "fp_mask")}
        self.proposer = Counter()
        self.proposer_ms: list[float] = []
        self.rejected = Counter()


def box_iou(a, b) -> float:
    """IoU of two Box-like (x1, y1, x2, y2) boxes, end exclusive."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(0.0, w) * max(0.0, h)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def match_regions(boxes: list, proposals: list) -> list[tuple[int, int]]:
    """One-to-one (object, proposal) pairs with IoU >= MATCH_IOU, greedily by IoU."""
    pairs = sorted(
        ((box_iou(b, p), i, j) for i, b in enumerate(boxes) for j, p in enumerate(proposals)),
        reverse=True,
    )
    used_o, used_p, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < MATCH_IOU:
            break
        if i not in used_o and j not in used_p:
            used_o.add(i)
            used_p.add(j)
            out.append((i, j))
    return out


def _relative(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Distance between estimate and truth over the truth's distance from the camera."""
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def estimate(depth, intrinsics, frame, use_mask: bool, up) -> dict:
    """name -> ObjectGeometry (objects without enough valid depth left out), measured along
    ``up`` as the node does with a concept set's geometry section."""
    out = {}
    for index, truth in enumerate(frame.objects):
        mask = frame.instance_ids == index if use_mask else None
        geo = object_geometry(depth, intrinsics, truth.box, mask=mask, up=up)
        if geo is not None:
            out[truth.name] = geo
    return out


def evaluate_frame(tally: Tally, clip, frame, depth, proposer: DepthProposer) -> None:
    """Centroid errors, relation facts and proposer matches of one noisy frame."""
    intrinsics = clip.intrinsics()
    for method in ("box", "mask"):
        geos = estimate(depth, intrinsics, frame, method == "mask", clip.settings.up)
        for truth in frame.objects:
            geo = geos.get(truth.name)
            if geo is None:
                tally.missing[method] += 1
                continue
            est, surface = np.asarray(geo.centroid), np.asarray(truth.surface_centroid)
            tally.errors[method].append(_relative(est, surface))
            if method == "box":
                tally.errors["solid"].append(_relative(est, np.asarray(truth.centre)))
                tally.distances.append(float(np.linalg.norm(surface)))
        predicted = metric_relations(geos, clip.settings)
        tally.facts[f"tp_{method}"].update(p for _, p, _ in predicted & frame.relations)
        tally.facts[f"fp_{method}"].update(p for _, p, _ in predicted - frame.relations)
    tally.facts["true"].update(p for _, p, _ in frame.relations)
    start = time.perf_counter()
    regions = proposer.propose(depth, intrinsics, image=frame.rgb)  # as the node calls it
    tally.proposer_ms.append((time.perf_counter() - start) * 1000)
    stacked = clip.stacked()
    matched = match_regions([t.box for t in frame.objects], [r.box for r in regions])
    hit = {frame.objects[i].name for i, _ in matched}
    depth_only = match_regions(
        [t.box for t in frame.objects], [r.box for r in proposer.propose(depth, intrinsics)]
    )
    tally.proposer.update(
        objects=len(frame.objects), matched=len(matched), proposals=len(regions),
        not_stacked=sum(t.name not in stacked for t in frame.objects),
        matched_not_stacked=len(hit - stacked), matched_depth_only=len(depth_only),
    )


def time_geometry(clip, depth) -> tuple[float, float]:
    """Median ms per frame of (object_geometry for 10 object boxes plus metric_relations,
    and that plus decoding the frame's 16UC1 depth message: what depth adds to a frame)."""
    frame, intrinsics = clip.frames[0], clip.intrinsics()
    boxes = [frame.objects[k % len(frame.objects)].box for k in range(TIMING_OBJECTS)]
    mm = depth_to_mm(depth)
    msg = SimpleNamespace(height=mm.shape[0], width=mm.shape[1], encoding="16UC1",
                          is_bigendian=0, step=mm.shape[1] * 2, data=mm.tobytes())
    geometry, added = [], []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        decoded = decode_depth(msg)
        decoded_at = time.perf_counter()
        geos = {
            f"o{k}": object_geometry(decoded, intrinsics, box, up=clip.settings.up)
            for k, box in enumerate(boxes)
        }
        metric_relations({k: g for k, g in geos.items() if g is not None}, clip.settings)
        end = time.perf_counter()
        geometry.append((end - decoded_at) * 1000)
        added.append((end - start) * 1000)
    return float(np.median(geometry)), float(np.median(added))


def run(args) -> tuple[dict, dict]:
    """(flat figures, per-predicate counts) over --clips clips."""
    tally = Tally()
    proposer = DepthProposer(DepthProposerSettings())
    geometry_ms = (float("nan"), float("nan"))
    for index in range(args.clips):
        clip = render_rgbd_clip(args.seed + index, frames=args.frames, width=args.width,
                                height=args.height, pitch_deg=args.pitch_deg)
        tally.rejected.update(clip.rejected)
        rng = np.random.default_rng((args.seed + index, 1))  # noise: apart from the scene draw
        for frame in clip.frames:
            depth = add_depth_noise(frame.depth_m, rng, args.noise, args.missing)
            evaluate_frame(tally, clip, frame, depth, proposer)
            if index == 0 and frame is clip.frames[0]:
                geometry_ms = time_geometry(clip, depth)
    return summarise(tally, args, geometry_ms)


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def summarise(tally: Tally, args, geometry_ms: tuple[float, float]) -> tuple[dict, dict]:
    facts, prop = tally.facts, tally.proposer
    true = sum(facts["true"].values())
    figures = {
        "centroid_err_median": float(np.median(tally.errors["box"])),
        "centroid_err_p95": float(np.percentile(tally.errors["box"], 95)),
        "centroid_err_solid_median": float(np.median(tally.errors["solid"])),
        "centroid_err_mask_median": float(np.median(tally.errors["mask"])),
        "centroid_err_mask_p95": float(np.percentile(tally.errors["mask"], 95)),
        "objects_evaluated": len(tally.errors["box"]),
        "objects_without_estimate": tally.missing["box"],
        "distance_range_m": [round(min(tally.distances), 3), round(max(tally.distances), 3)],
    }
    for method in ("box", "mask"):
        tp, fp = sum(facts[f"tp_{method}"].values()), sum(facts[f"fp_{method}"].values())
        suffix = "" if method == "box" else "_mask"
        figures[f"relation_precision{suffix}"] = _ratio(tp, tp + fp)
        figures[f"relation_recall{suffix}"] = _ratio(tp, true)
    figures.update({
        "relation_facts_true": true,
        "proposer_recall": _ratio(prop["matched"], prop["objects"]),
        "proposer_precision": _ratio(prop["matched"], prop["proposals"]),
        "proposer_recall_not_stacked": _ratio(prop["matched_not_stacked"], prop["not_stacked"]),
        "proposer_recall_depth_only": _ratio(prop["matched_depth_only"], prop["objects"]),
        "geometry_ms_per_frame_10_objects": geometry_ms[0],
        "depth_added_ms_per_frame": geometry_ms[1],
        "proposer_ms_per_frame": float(np.median(tally.proposer_ms)),
        "clips": args.clips,
        "frames": args.clips * args.frames,
        "resolution": f"{args.width}x{args.height}",
        "pitch_deg": args.pitch_deg,
        "noise_frac": args.noise,
        "missing_frac": args.missing,
        "scene_draws_rejected": sum(tally.rejected.values()),
    })
    per_predicate = {
        p: {
            "true": facts["true"][p],
            "tp": facts["tp_box"][p],
            "fp": facts["fp_box"][p],
            "fn": facts["true"][p] - facts["tp_box"][p],
            "tp_mask": facts["tp_mask"][p],
            "fp_mask": facts["fp_mask"][p],
            "fn_mask": facts["true"][p] - facts["tp_mask"][p],
        }
        for p in GEOMETRY_PREDICATES
    }
    return figures, per_predicate


def failed_goals(figures: dict) -> list[str]:
    """The goals not met, as readable lines (NaN fails)."""
    failed = []
    for key, op, bound in GOALS:
        value = figures[key]
        ok = value <= bound if op == "<=" else value >= bound  # NaN compares False: fails
        if not ok:
            failed.append(f"{key} = {value:.4g}, goal {op} {bound}")
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--clips", type=int, default=60, help="synthetic clips (seeded)")
    parser.add_argument("--frames", type=int, default=6, help="frames per clip")
    parser.add_argument("--seed", type=int, default=0, help="clip i uses seed + i")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--pitch-deg", type=float, default=5.0, help="camera pitch, down")
    parser.add_argument("--noise", type=float, default=0.01, help="depth noise sigma / depth")
    parser.add_argument("--missing", type=float, default=0.2, help="share of pixels dropped")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the goal is met")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.frames < 1:
        parser.error("--clips and --frames must be >= 1")
    figures, per_predicate = run(args)
    failed = failed_goals(figures)
    figures["goal_met"] = not failed
    report(figures, None, width=34)
    print(f"{'predicate':14s} {'true':>6s} {'tp':>6s} {'fp':>5s} {'fn':>5s}   with masks: tp fp fn")
    for p, c in per_predicate.items():
        print(f"{p:14s} {c['true']:6d} {c['tp']:6d} {c['fp']:5d} {c['fn']:5d}   "
              f"{c['tp_mask']} {c['fp_mask']} {c['fn_mask']}")
    print("geometry goal: " + ("met" if not failed else "NOT met: " + "; ".join(failed)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({**figures, "failed_goals": failed, "relations_by_predicate": per_predicate},
                      f, indent=2)
    return 1 if failed and args.check else 0


if __name__ == "__main__":
    raise SystemExit(main())
