"""ShapesWorld: synthetic clips of moving coloured shapes with VidOR-style annotations and
captions that narrate the order of events.

    python -m training.synth --out data/shapes --videos 200 --seed 0 [--frames 12] [--fps 1]
                             [--format png|mp4]

Writes ``DIR/annotations/<video_id>.json`` (VidOR/VidVRD fields plus ``video_path``,
``unary_instances``, ``caption`` and ``meta``), the frames (``DIR/frames/<video_id>/000000.png``
or ``DIR/videos/<video_id>.mp4``) and ``DIR/dataset.json``. Boxes are tight integer boxes of
the drawn pixels with ``xmax``/``ymax`` exclusive (see :mod:`sgclip_ros.sim.shapes_scene`,
which draws and renders the scenes and is installed with the package).
Everything is a pure function of ``(seed, clip index)``.

Library use: :func:`render_clip` returns one clip's RGB frames and annotation without writing
anything (e.g. for a ROS demo); :func:`generate_dataset` writes a dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sgclip_ros.sim.shapes_scene import ScenePlan, clip_rng, plan_scene, relations, render_frames
from training import caption_grammar as G
from training import synth_captions as C
from training.caption_grammar import CATEGORIES, COLOURS, RELATIONS

GENERATOR_VERSION = "shapesworld-2"
BBOX_CONVENTION = "integer pixels; xmin/ymin inclusive, xmax/ymax exclusive"
FORMATS = ("png", "mp4")
DEFAULT_FPS = 1.0  # the reference samples training videos at 1 fps
_ATTEMPTS = 50


@dataclass
class Clip:
    """One rendered clip: RGB uint8 frames [H, W, 3] and its VidOR-style annotation."""

    video_id: str
    frames: list[np.ndarray]
    annotation: dict[str, Any]
    plan: ScenePlan


def clip_id(seed: int, index: int) -> str:
    return f"shapes_s{seed}_{index:05d}"


def render_clip(seed: int, index: int = 0, frames: int = 12, fps: float = DEFAULT_FPS,
                video_id: str | None = None) -> Clip:
    """Render clip ``index`` of the dataset with ``seed`` (deterministic); writes nothing.

    The annotation has every field of the files :func:`generate_dataset` writes except
    ``video_path``.
    """
    rng = clip_rng(seed, index)
    video_id = video_id or clip_id(seed, index)
    for _ in range(_ATTEMPTS):
        plan = plan_scene(rng, frames)
        try:
            caption = compose_caption(plan, rng)
        except C.NarrationError:
            continue
        annotation = build_annotation(plan, caption, video_id, fps)
        annotation["meta"].update(seed=seed, index=index)
        return Clip(video_id, render_frames(plan), annotation, plan)
    raise RuntimeError(f"clip {index} of seed {seed}: nothing to narrate after {_ATTEMPTS} draws")


def pair_states(plan: ScenePlan, subject: int, obj: int) -> list[set[str]]:
    """Per-frame ground-truth relations of shape ``subject`` to shape ``obj``."""
    return [relations(plan.boxes(t)[subject], plan.boxes(t)[obj])
            for t in range(len(plan.positions))]


def compose_caption(plan: ScenePlan, rng: np.random.Generator) -> str:
    """Caption of the clip: the narrated pair's events, what lasts between them, then sentences
    about the other shapes (what lasts between each and one of the pair, or just presence)."""
    states = pair_states(plan, plan.subject, plan.object)
    events = C.narrate_events(states, plan.horizontal)
    if len(events) < 2:
        raise C.NarrationError("fewer than two events")
    labels = [(shape.category, shape.colour) for shape in plan.shapes]
    mentions = C.Mentions(labels, rng)
    touch_frames = sum("touching" in s for s in states)
    text = C.narrative(events, mentions, plan.subject, plan.object, 0 < touch_frames <= 2)
    # The narrated events speak of the motion axis; a relation on the other axis that lasts
    # (passing in neighbouring lanes) is said too, as a describer watching the clip would.
    across = set(G.AXES[not plan.horizontal]) & set.intersection(*states)
    for relation in sorted(across):
        text += " " + C.lasting_sentence(mentions, plan.subject, plan.object, relation)
    for other in range(len(plan.shapes)):
        if other in (plan.subject, plan.object):
            continue
        draw = rng.random()
        if draw < 0.7:
            anchor = (plan.subject, plan.object)[int(rng.integers(2))]
            lasting = set.intersection(*pair_states(plan, other, anchor)) - {"touching"}
            for relation in sorted(lasting):
                text += " " + C.lasting_sentence(mentions, other, anchor, relation)
            if not lasting:
                text += " " + C.presence_sentence(*labels[other])
        elif draw < 0.9:
            text += " " + C.presence_sentence(*labels[other])
    return text


def build_annotation(plan: ScenePlan, caption: str, video_id: str, fps: float) -> dict[str, Any]:
    """VidOR-style annotation dict of a plan (``video_path`` is added by the writer)."""
    frames = len(plan.positions)
    trajectories = []
    for t in range(frames):
        trajectories.append([
            {"tid": tid, "bbox": dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)),
             "generated": 0}
            for tid, box in enumerate(plan.boxes(t))
        ])
    return {
        "version": "VERSION 1.0",
        "video_id": video_id,
        "frame_count": frames,
        "fps": float(fps),
        "width": plan.width,
        "height": plan.height,
        "subject/objects": [{"tid": tid, "category": s.category}
                            for tid, s in enumerate(plan.shapes)],
        "trajectories": trajectories,
        "relation_instances": relation_instances(plan),
        "unary_instances": [{"tid": tid, "predicate": s.colour, "begin_fid": 0, "end_fid": frames}
                            for tid, s in enumerate(plan.shapes)],
        "caption": caption,
        "meta": {
            "generator": GENERATOR_VERSION,
            "scenario": plan.scenario,
            "horizontal": plan.horizontal,
            "subject_tid": plan.subject,
            "object_tid": plan.object,
            "bbox_convention": BBOX_CONVENTION,
        },
    }


def relation_instances(plan: ScenePlan) -> list[dict[str, Any]]:
    """Maximal runs [begin_fid, end_fid) of every relation of every ordered pair."""
    count = len(plan.shapes)
    instances = []
    for s in range(count):
        for o in range(count):
            if s == o:
                continue
            states = pair_states(plan, s, o)
            for predicate in RELATIONS:
                for begin, end in _runs([predicate in st for st in states]):
                    instances.append({"subject_tid": s, "object_tid": o, "predicate": predicate,
                                      "begin_fid": begin, "end_fid": end})
    return instances


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    runs, start = [], None
    for t, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            runs.append((start, t))
            start = None
    return runs


def write_png_frames(frames: list[np.ndarray], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        path = folder / f"{t:06d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


def write_mp4(frames: list[np.ndarray], path: Path, fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cv2.VideoWriter cannot open {path} (mp4v, {width}x{height}, {fps} fps)")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def generate_dataset(out_dir: str | Path, videos: int, seed: int, frames: int = 12,
                     fps: float = DEFAULT_FPS, fmt: str = "png") -> dict[str, Any]:
    """Write ``videos`` clips under ``out_dir``; returns the ``dataset.json`` summary."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if videos < 1 or fps <= 0:
        raise ValueError("need videos >= 1 and fps > 0")
    root = Path(out_dir)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    counts: dict[str, Counter] = {k: Counter() for k in ("categories", "unary", "predicates",
                                                          "scenarios")}
    for index in range(videos):
        clip = render_clip(seed, index, frames, fps)
        if fmt == "png":
            relative = f"frames/{clip.video_id}"
            write_png_frames(clip.frames, root / relative)
        else:
            relative = f"videos/{clip.video_id}.mp4"
            write_mp4(clip.frames, root / relative, fps)
        annotation = {"video_path": relative, **clip.annotation}
        path = root / "annotations" / f"{clip.video_id}.json"
        path.write_text(json.dumps(annotation), encoding="utf-8")
        _count(counts, annotation)
    summary = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "videos": videos,
        "frames_per_video": frames,
        "total_frames": videos * frames,
        "fps": fps,
        "format": fmt,
        "bbox_convention": BBOX_CONVENTION,
        "concepts": {"categories": list(CATEGORIES), "unary": list(COLOURS),
                     "binary": list(RELATIONS)},
        "counts": {key: dict(sorted(c.items())) for key, c in counts.items()},
    }
    (root / "dataset.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _count(counts: dict[str, Counter], annotation: dict[str, Any]) -> None:
    counts["categories"].update(o["category"] for o in annotation["subject/objects"])
    counts["unary"].update(u["predicate"] for u in annotation["unary_instances"])
    counts["predicates"].update(r["predicate"] for r in annotation["relation_instances"])
    counts["scenarios"][annotation["meta"]["scenario"]] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--videos", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, required=True, help="dataset seed")
    parser.add_argument("--frames", type=int, default=12, help="frames per clip (>= 4)")
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate metadata")
    parser.add_argument("--format", choices=FORMATS, default="png", help="frame folders or mp4")
    args = parser.parse_args(argv)
    try:
        summary = generate_dataset(args.out, args.videos, args.seed, args.frames, args.fps,
                                   args.format)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {summary['videos']} clips ({summary['total_frames']} frames) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
