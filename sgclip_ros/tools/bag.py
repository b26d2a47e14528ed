"""Offline runner: camera images of a rosbag2 bag -> SceneGraph messages in a new bag.

    python -m sgclip_ros.tools.bag --in BAG --out BAG [--jsonl FILE] [--topics T1,T2]
        [--model-dir DIR | --untrained-tiny] [--concepts YAML] [--window N] [--stride N]

Reads sensor_msgs/Image and CompressedImage (mcap or sqlite3) with `rosbags`, converts them with
the node's converters, runs the node's SGClipPredictor (one stream per topic, stamps from the
headers) and writes /sgclip/scene_graph with each graph logged at its newest frame's log time.
Bad frames are counted and summarised, never fatal. No ROS installation is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from tqdm import tqdm

from sgclip_ros.core.input_checks import (
    DEFAULT_MAX_PIXELS,
    DropCounter,
    FrameRejected,
    StampGuard,
)
from sgclip_ros.core.scene_graph import SceneGraph
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
SCENE_GRAPH = "sgclip_ros/msg/SceneGraph"
OUTPUT_TOPIC = "/sgclip/scene_graph"
PACKAGE = "sgclip_ros"
_NS = 1_000_000_000
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def package_path(relative: str) -> Path:
    """A file of this package: the source tree first, then share/sgclip_ros of each prefix."""
    candidates = [_SOURCE_ROOT / relative]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / PACKAGE / relative)
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative} not found in {', '.join(map(str, candidates))}")


def make_typestore(msg_dir: Path | None = None):
    """The ROS 2 Humble typestore plus this package's messages, parsed from msg/*.msg.

    Header, Time and RegionOfInterest, all SceneGraph uses, are the same in Humble to Kilted.
    """
    store = get_typestore(Stores.ROS2_HUMBLE)
    msg_dir = msg_dir or package_path("msg")
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        text = path.read_text(encoding="utf-8")
        types.update(get_types_from_msg(text, f"{PACKAGE}/msg/{path.stem}"))
    if SCENE_GRAPH not in types:
        raise FileNotFoundError(f"{msg_dir} holds no SceneGraph.msg")
    store.register(types)
    return store


# ---- core SceneGraph -> rosbags message ----------------------------------------------------
def _time(store, ns: int):
    if ns < 0:
        raise ValueError(f"stamp must be non-negative, got {ns} ns")
    return store.types["builtin_interfaces/msg/Time"](sec=ns // _NS, nanosec=ns % _NS)


def _roi(store, box):
    # Same rounding as sgclip_ros.ros.conversions.roi_from_box (tested byte-identical).
    x1, y1 = max(0, int(round(box.x1))), max(0, int(round(box.y1)))
    x2, y2 = max(x1, int(round(box.x2))), max(y1, int(round(box.y2)))
    roi = store.types["sensor_msgs/msg/RegionOfInterest"]
    return roi(x_offset=x1, y_offset=y1, height=y2 - y1, width=x2 - x1, do_rectify=False)


def _object(store, obj):
    t = store.types
    return t[f"{PACKAGE}/msg/SceneObject"](
        id=obj.id,
        label=obj.label,
        score=float(obj.score),
        labels=[
            t[f"{PACKAGE}/msg/LabelScore"](label=lp.label, score=float(lp.score))
            for lp in obj.labels
        ],
        detector_label=obj.detector_label,
        observations=[
            t[f"{PACKAGE}/msg/ObjectObservation"](
                frame_index=int(ob.frame_index),
                box=_roi(store, ob.box),
                confidence=float(ob.confidence),
            )
            for ob in obj.observations
        ],
    )


def _evidence(fact) -> dict:
    return {
        "score": float(fact.score),
        "first_frame": int(fact.first_frame),
        "last_frame": int(fact.last_frame),
        "frame_indices": np.asarray(fact.frame_indices, dtype=np.uint32),
        "frame_scores": np.asarray(fact.frame_scores, dtype=np.float32),
    }


def graph_to_rosbags(store, graph: SceneGraph):
    """The rosbags twin of sgclip_ros.ros.conversions.scene_graph_to_msg."""
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=_time(store, graph.stamp_ns), frame_id=graph.frame_id)
    return t[SCENE_GRAPH](
        header=header,
        frame_stamps=[_time(store, ns) for ns in graph.frame_stamps_ns],
        camera=graph.camera,
        concepts_id=graph.concepts_id,
        objects=[_object(store, o) for o in graph.objects],
        attributes=[
            t[f"{PACKAGE}/msg/AttributeScore"](
                object_id=a.object_id, attribute=a.attribute, **_evidence(a)
            )
            for a in graph.attributes
        ],
        relations=[
            t[f"{PACKAGE}/msg/Relation"](
                subject_id=r.subject_id,
                predicate=r.predicate,
                object_id=r.object_id,
                **_evidence(r),
            )
            for r in graph.relations
        ],
        inference_ms=float(graph.inference_ms),
        backend=graph.backend,
    )


# ---- model ------------------------------------------------------------------------------------
def load_backend(args):
    """(TorchBackend, untrained?) from --model-dir (manifest verified when present) or tiny."""
    from sgclip_ros.core.backend import TorchBackend
    from sgclip_ros.core.model import WEIGHTS_FILE, build_model, load_model
    from sgclip_ros.core.model_config import load_model_config
    from sgclip_ros.core.model_store import MANIFEST, model_id, sha256_file, verify_model_dir

    if args.untrained_tiny:
        print(
            "WARNING: using an UNTRAINED sgclip-tiny model (random weights, seed 0): the graphs "
            "have the right structure and stamps, but labels and relations are meaningless.",
            file=sys.stderr,
        )
        model = build_model(load_model_config("sgclip-tiny"), seed=0)
        return TorchBackend(model, "untrained-sgclip-tiny-seed0", args.device), True
    model_dir = Path(args.model_dir)
    if (model_dir / MANIFEST).is_file():
        mid = model_id(verify_model_dir(model_dir, model_dir, required=(WEIGHTS_FILE,)))
    else:
        print(f"WARNING: {model_dir} has no {MANIFEST}: weights not verified", file=sys.stderr)
        weights = model_dir / WEIGHTS_FILE
        mid = sha256_file(weights)[:16] if weights.is_file() else "unknown"
    return TorchBackend(load_model(model_dir), mid, args.device), False


def make_predictor(args, backend):
    from sgclip_ros.core.concepts import load_concepts
    from sgclip_ros.core.predictor import PredictorConfig, SGClipPredictor
    from sgclip_ros.core.window import WindowConfig

    concepts = load_concepts(args.concepts or package_path("config/concepts/shapes.yaml"))
    window = WindowConfig(size=args.window, stride=args.stride)
    return SGClipPredictor(backend, concepts, PredictorConfig(window=window))


# ---- the run ----------------------------------------------------------------------------------
@dataclass
class RunStats:
    frames_read: int = 0
    frames_processed: int = 0
    graphs_written: int = 0
    graphs_per_topic: dict[str, int] = field(default_factory=dict)
    drops: DropCounter = field(default_factory=DropCounter)

    def to_dict(self, topics: list[str]) -> dict:
        return {
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "graphs_written": self.graphs_written,
            "graphs_per_topic": dict(self.graphs_per_topic),
            "rejected": {t: self.drops.by_reason(t) for t in topics},
            "rejected_total": self.drops.count(),
        }


def storage_of(path: Path) -> StoragePlugin:
    """The storage plugin of an existing bag (directory or single file)."""
    files = [path] if path.is_file() else list(path.iterdir())
    if any(f.suffix == ".mcap" for f in files):
        return StoragePlugin.MCAP
    if any(f.suffix == ".db3" for f in files):
        return StoragePlugin.SQLITE3
    raise ValueError(f"{path}: neither .mcap nor .db3 storage found")


def select_connections(reader, topics: list[str] | None) -> list:
    """Image/CompressedImage connections, restricted to ``topics``; errors name what exists."""
    images = [c for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)]
    if topics:
        missing = sorted(set(topics) - {c.topic for c in images})
        if missing:
            have = sorted({c.topic for c in images}) or ["none"]
            raise ValueError(f"no image topic(s) {missing} in the bag; image topics: {have}")
        images = [c for c in images if c.topic in topics]
    if not images:
        found = sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections) or ["none"]
        raise ValueError(f"the bag has no sensor_msgs Image/CompressedImage topics: {found}")
    return images


class Runner:
    """One frame at a time: deserialise, convert, check order, predict, write."""

    def __init__(self, store, predictor, writer, out_conn, max_pixels: int, jsonl=None):
        self.store, self.predictor = store, predictor
        self.writer, self.out_conn = writer, out_conn
        self.max_pixels, self.jsonl = max_pixels, jsonl
        self.guards: dict[str, StampGuard] = {}
        self.stats = RunStats()

    def frame(self, conn, log_ns: int, raw) -> None:
        self.stats.frames_read += 1
        try:
            graph = self._predict(conn, raw)
        except FrameRejected as exc:
            if not self.stats.drops.count(conn.topic, exc.reason):
                # The first of each kind is shown; the rest are counted for the summary.
                tqdm.write(f"bag: {conn.topic}: rejected: {exc}", file=sys.stderr)
            self.stats.drops.add(conn.topic, exc.reason)
            return
        self.stats.frames_processed += 1
        if graph is not None:
            self._write(graph, log_ns)

    def _predict(self, conn, raw) -> SceneGraph | None:
        try:
            msg = self.store.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:  # any decoder error means the stored bytes are unusable
            raise FrameRejected("bad_message", f"cannot deserialise {conn.msgtype}: {exc}") from exc
        if conn.msgtype == IMAGE:
            rgb = image_to_rgb(msg, self.max_pixels)
        else:
            rgb = compressed_to_rgb(msg, self.max_pixels)
        stamp_ns = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
        # Offline there is no clock to compare with (now = 0): only the order is checked.
        self.guards.setdefault(conn.topic, StampGuard(0.0, 0.0)).check(stamp_ns, 0)
        try:
            return self.predictor.add_frame(conn.topic, rgb, stamp_ns, None, msg.header.frame_id)
        except (ValueError, RuntimeError) as exc:  # e.g. a backend failure on one frame
            raise FrameRejected("inference_error", f"inference failed: {exc}") from exc

    def _write(self, graph: SceneGraph, log_ns: int) -> None:
        data = self.store.serialize_cdr(graph_to_rosbags(self.store, graph), SCENE_GRAPH)
        self.writer.write(self.out_conn, log_ns, data)
        if self.jsonl is not None:
            self.jsonl.write(graph.to_json() + "\n")
        self.stats.graphs_written += 1
        per = self.stats.graphs_per_topic
        per[graph.camera] = per.get(graph.camera, 0) + 1


def _feed(reader, conns, runner: Runner, progress: bool) -> bool:
    """Every selected message through ``runner``; True when interrupted with Ctrl-C."""
    total = sum(c.msgcount for c in conns)
    messages = reader.messages(connections=conns)
    bar = tqdm(
        messages,
        total=total,
        unit="frame",
        file=sys.stderr,
        disable=not progress,
        desc="sgclip bag",
    )
    try:
        for conn, log_ns, raw in bar:
            runner.frame(conn, log_ns, raw)
    except KeyboardInterrupt:
        return True  # the caller still closes the output: graphs written so far stay usable
    finally:
        bar.close()
    return False


def run(args) -> dict:
    """Run the whole bag; returns the summary dict."""
    in_path, out_path = Path(args.in_bag), Path(args.out_bag)
    if not in_path.exists():
        raise FileNotFoundError(f"input bag {in_path} does not exist")
    if out_path.exists():
        raise FileExistsError(f"output bag {out_path} exists already; not overwriting")
    topics = [t.strip() for t in args.topics.split(",") if t.strip()] if args.topics else None
    store = make_typestore()
    storage = StoragePlugin[args.storage.upper()] if args.storage else storage_of(in_path)
    with ExitStack() as stack:
        reader = stack.enter_context(Reader(in_path))
        conns = select_connections(reader, topics)
        backend, untrained = load_backend(args)
        predictor = make_predictor(args, backend)
        jsonl = stack.enter_context(open(args.jsonl, "w", encoding="utf-8")) if args.jsonl else None
        writer = stack.enter_context(Writer(out_path, version=8, storage_plugin=storage))
        out_conn = writer.add_connection(OUTPUT_TOPIC, SCENE_GRAPH, typestore=store)
        runner = Runner(store, predictor, writer, out_conn, args.max_pixels, jsonl)
        interrupted = _feed(reader, conns, runner, progress=not args.no_progress)
    summary = runner.stats.to_dict(sorted({c.topic for c in conns}))
    summary.update(
        storage=storage.name.lower(),
        untrained=untrained,
        output=str(out_path),
        interrupted=interrupted,
    )
    return summary


def format_summary(summary: dict) -> str:
    lines = [
        f"bag: {summary['frames_read']} frames read, {summary['frames_processed']} processed, "
        f"{summary['graphs_written']} scene graphs written to {summary['output']} "
        f"({summary['storage']})" + (" - INTERRUPTED" if summary.get("interrupted") else "")
    ]
    for topic, reasons in summary["rejected"].items():
        detail = ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items())) or "none"
        lines.append(f"bag: {topic}: rejected {sum(reasons.values())} ({detail})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sgclip_ros.tools.bag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--in", dest="in_bag", required=True, help="input rosbag2 (dir or file)")
    p.add_argument("--out", dest="out_bag", required=True, help="output bag directory (new)")
    p.add_argument("--jsonl", help="also write each graph's to_dict() as one JSON line")
    p.add_argument("--topics", help="comma-separated image topics (default: all image topics)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-dir", help="directory with model.safetensors + config.json")
    model.add_argument(
        "--untrained-tiny",
        action="store_true",
        help="random sgclip-tiny weights: for plumbing checks only",
    )
    p.add_argument("--concepts", help="concepts YAML (default: config/concepts/shapes.yaml)")
    p.add_argument("--window", type=_positive, default=8, help="frames per window (default 8)")
    p.add_argument("--stride", type=_positive, default=1, help="new frames per graph (default 1)")
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), help="output storage (default: the input's)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"reject larger images (default {DEFAULT_MAX_PIXELS}; 0: no limit)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--summary-json", help="write the run summary as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (OSError, ValueError, ReaderError, WriterError, TypesysError) as exc:
        # missing files, unreadable bags, bad models or concepts: one clear line, no traceback
        print(f"bag: error: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
