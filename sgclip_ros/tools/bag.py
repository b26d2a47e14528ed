"""Offline runner: camera images of a rosbag2 bag -> SceneGraph messages in a new bag.

    ros2 run sgclip_ros bag_runner --in BAG --out BAG [--jsonl FILE] [--topics T1,T2]
        [--model-dir DIR | --untrained-tiny] [--backend auto|torch|onnxruntime|aoti|tensorrt]
        [--device auto|cpu|cuda|cuda:N] [--detections D1,D2 [--detection-tolerance-s S]]
        [--depth D1,D2 --camera-info C1,C2 [--depth-tolerance-s S]]
        [--concepts YAML] [--window N] [--stride N]
    python -m sgclip_ros.tools.bag ...   (the same, from a source tree)

Reads sensor_msgs/Image and CompressedImage (mcap or sqlite3) with `rosbags`, converts them with
the node's converters, runs the node's SGClipPredictor (one stream per topic, stamps from the
headers) and writes /sgclip/scene_graph with each graph logged at its newest frame's log time.
Bad frames are counted and summarised, never fatal. No ROS installation is needed.

Model: loaded like the node's (`sgclip_ros.core.backend_select.load_backend`: backend choice
and fallback, sha256 manifest checks; a changed file is refused). `--model-dir` is a path
relative to the current directory (or absolute); the folder itself is the model root, so no
file in it may resolve outside it. A bare name that is not a folder here (`--model-dir
shapes_default`) is looked up in the package's models folder (share/sgclip_ros/models, or the
source tree's models/), root and name as the node uses them.

Detections: `--detections` names one vision_msgs/msg/Detection2DArray topic of the bag per
`--topics` entry (same order); each frame uses the set with its header stamp (or the nearest
within `--detection-tolerance-s`) instead of the built-in proposer. A frame without one is
rejected as `no_detections`, as in the node (see `sgclip_ros.tools.bag_detections`).

Depth: `--depth` and `--camera-info` name, per `--topics` entry, an aligned depth Image topic
(16UC1 mm or 32FC1 m) and the colour camera's CameraInfo topic ("" for none). Objects then get
3D positions, and a concept file with a `geometry:` section gets metric relations. Depth is
paired by stamp (nearest within `--depth-tolerance-s`); bad or missing depth is counted by
reason and the frame goes on without positions, as in the node (`sgclip_ros.tools.bag_depth`).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import TypesysError
from tqdm import tqdm

from sgclip_ros.core.frame_encoder import FrameInput
from sgclip_ros.core.input_checks import (
    DEFAULT_MAX_PIXELS,
    DropCounter,
    FrameRejected,
    StampGuard,
)
from sgclip_ros.core.scene_graph import SceneGraph
from sgclip_ros.ros.depth_input import DepthRejected
from sgclip_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from sgclip_ros.tools.bag_depth import BagDepth, pair_depth_topics
from sgclip_ros.tools.bag_detections import DetectionIndex, pair_topics, read_detections
from sgclip_ros.tools.bag_messages import (
    SCENE_GRAPH,
    graph_to_rosbags,
    make_typestore,
)
from sgclip_ros.tools.bag_model import domain_check, load_backend, make_predictor

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
OUTPUT_TOPIC = "/sgclip/scene_graph"
_NS = 1_000_000_000


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

    def __init__(
        self,
        store,
        predictor,
        writer,
        out_conn,
        max_pixels: int,
        jsonl=None,
        detections: dict[str, DetectionIndex] | None = None,
        tolerance_ns: int = 0,
        depth: BagDepth | None = None,
    ):
        self.store, self.predictor = store, predictor
        self.writer, self.out_conn = writer, out_conn
        self.max_pixels, self.jsonl = max_pixels, jsonl
        self.detections, self.tolerance_ns = detections or {}, tolerance_ns
        self.guards: dict[str, StampGuard] = {}
        self.depth = depth
        self.stats = RunStats()

    def message(self, conn, log_ns: int, raw) -> None:
        """Any selected message: an image, or a depth or CameraInfo message of a camera."""
        if self.depth is not None and conn.topic in self.depth.side:
            self._side(conn, raw)
            return
        if self.depth is None or not self.depth.holds(conn.topic):
            self.frame(conn, log_ns, raw)
            return
        self.stats.frames_read += 1
        try:
            msg = self._deserialize(conn, raw)
        except FrameRejected as exc:
            self._reject(conn.topic, exc)
            return
        for item in self.depth.hold(conn.topic, _stamp(msg), (conn, log_ns, msg)):
            self.frame(*item, counted=True)

    def _side(self, conn, raw) -> None:
        image, _ = self.depth.side[conn.topic]
        try:
            msg = self._deserialize(conn, raw)
        except FrameRejected:
            self.depth.input.count(image, "depth_malformed")
            return
        for item in self.depth.add_side(conn.topic, _stamp(msg), msg):
            self.frame(*item, counted=True)

    def finish(self) -> None:
        """The bag ended: images still waiting for depth are processed with what there is."""
        for item in self.depth.flush() if self.depth is not None else []:
            self.frame(*item, counted=True)

    def frame(self, conn, log_ns: int, raw, counted: bool = False) -> None:
        """One image (raw bytes, or a message already read when ``counted``)."""
        if not counted:
            self.stats.frames_read += 1
        try:
            graph = self._predict(conn, raw)
        except FrameRejected as exc:
            self._reject(conn.topic, exc)
            return
        self.stats.frames_processed += 1
        if graph is not None:
            self._write(graph, log_ns)

    def _reject(self, topic: str, exc: FrameRejected) -> None:
        if not self.stats.drops.count(topic, exc.reason):
            # The first of each kind is shown; the rest are counted for the summary.
            tqdm.write(f"bag: {topic}: rejected: {exc}", file=sys.stderr)
        self.stats.drops.add(topic, exc.reason)

    def _deserialize(self, conn, raw):
        try:
            return self.store.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:  # any decoder error means the stored bytes are unusable
            raise FrameRejected("bad_message", f"cannot deserialise {conn.msgtype}: {exc}") from exc

    def _predict(self, conn, raw) -> SceneGraph | None:
        msg = raw if not isinstance(raw, (bytes, bytearray, memoryview)) else None
        msg = msg or self._deserialize(conn, raw)
        if conn.msgtype == IMAGE:
            rgb = image_to_rgb(msg, self.max_pixels)
        else:
            rgb = compressed_to_rgb(msg, self.max_pixels)
        stamp_ns = _stamp(msg)
        # Offline there is no clock to compare with (now = 0): only the order is checked.
        self.guards.setdefault(conn.topic, StampGuard(0.0, 0.0)).check(stamp_ns, 0)
        regions = None  # None: the built-in proposer
        index = self.detections.get(conn.topic)
        if index is not None:
            regions = index.match(stamp_ns, self.tolerance_ns)
            if regions is None:
                raise FrameRejected(
                    "no_detections", f"no {index.topic} detection set for stamp {stamp_ns} ns"
                )
        depth, intrinsics = self._depth(conn.topic, stamp_ns, rgb)
        item = FrameInput(
            conn.topic, rgb, stamp_ns, regions, msg.header.frame_id, depth, intrinsics
        )
        try:
            return self.predictor.add_frames([item])[0]
        except (ValueError, RuntimeError) as exc:  # e.g. a backend failure on one frame
            raise FrameRejected("inference_error", f"inference failed: {exc}") from exc

    def _depth(self, topic: str, stamp_ns: int, rgb) -> tuple:
        if self.depth is None or not self.depth.holds(topic):
            return None, None
        try:
            return self.depth.input.lookup(topic, stamp_ns, rgb.shape[1], rgb.shape[0])
        except DepthRejected as exc:
            if self.depth.input.problems[topic].get(exc.reason) == 1:
                tqdm.write(f"bag: {topic}: frame without depth: {exc}", file=sys.stderr)
            return None, None

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
            runner.message(conn, log_ns, raw)
        runner.finish()
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
    pairs = pair_topics(topics or [], args.detections)
    for name in ("detection_tolerance_s", "depth_tolerance_s"):
        if not (getattr(args, name) >= 0):  # also refuses nan
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be >= 0, got {getattr(args, name)}")
    depth_pairs = pair_depth_topics(topics or [], args.depth, args.camera_info)
    store = make_typestore()
    storage = StoragePlugin[args.storage.upper()] if args.storage else storage_of(in_path)
    with ExitStack() as stack:
        reader = stack.enter_context(Reader(in_path))
        conns = select_connections(reader, topics)
        conns += side_connections(reader, depth_pairs)
        detections = read_detections(reader, pairs)
        choice, model_dir = load_backend(args)
        predictor = make_predictor(args, choice.backend)
        domain = domain_check(model_dir, predictor.concepts)
        jsonl = stack.enter_context(open(args.jsonl, "w", encoding="utf-8")) if args.jsonl else None
        writer = stack.enter_context(Writer(out_path, version=8, storage_plugin=storage))
        out_conn = writer.add_connection(OUTPUT_TOPIC, SCENE_GRAPH, typestore=store)
        tolerance_ns = int(round(args.detection_tolerance_s * _NS))
        depth = BagDepth(depth_pairs, args.depth_tolerance_s) if depth_pairs else None
        runner = Runner(
            store, predictor, writer, out_conn, args.max_pixels, jsonl, detections, tolerance_ns,
            depth,
        )
        interrupted = _feed(reader, conns, runner, progress=not args.no_progress)
    images = sorted({c.topic for c in conns if c.msgtype in (IMAGE, COMPRESSED)} - set(
        runner.depth.side if runner.depth else ()
    ))
    summary = runner.stats.to_dict(images)
    drops = runner.stats.drops
    summary.update(
        storage=storage.name.lower(),
        untrained=choice.untrained,
        model_domain=domain.to_dict(),
        model={
            "dir": model_dir,
            "id": choice.backend.model_id,
            "backend": choice.backend.name,
            "requested": choice.requested,
            "device": str(choice.backend.device),
            "fallbacks": list(choice.fallbacks),
        },
        no_detections=drops.count(reason="no_detections"),
        detections={
            image: {**index.summary(), "no_detections": drops.count(image, "no_detections")}
            for image, index in detections.items()
        },
        depth=runner.depth.summary() if runner.depth else {},
        output=str(out_path),
        interrupted=interrupted,
    )
    return summary


def side_connections(reader, pairs: dict) -> list:
    """The connections of the depth and CameraInfo topics; a missing one is named."""
    wanted = {t for pair in pairs.values() for t in pair}
    conns = [c for c in reader.connections if c.topic in wanted]
    missing = sorted(wanted - {c.topic for c in conns})
    if missing:
        raise ValueError(f"no depth/camera info topic(s) {missing} in the bag")
    return conns


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)


def format_summary(summary: dict) -> str:
    lines = [
        f"bag: {summary['frames_read']} frames read, {summary['frames_processed']} processed, "
        f"{summary['graphs_written']} scene graphs written to {summary['output']} "
        f"({summary['storage']})" + (" - INTERRUPTED" if summary.get("interrupted") else "")
    ]
    warning = summary.get("model_domain", {}).get("warning")
    if warning:
        lines.append(f"bag: WARNING: {warning}")
    for topic, reasons in summary["rejected"].items():
        detail = ", ".join(f"{r} x{n}" for r, n in sorted(reasons.items())) or "none"
        lines.append(f"bag: {topic}: rejected {sum(reasons.values())} ({detail})")
    for topic, d in summary.get("depth", {}).items():
        problems = ", ".join(f"{r} x{n}" for r, n in sorted(d["problems"].items())) or "none"
        lines.append(f"bag: {topic}: depth from {d['depth']}: {d['paired']} frames paired, "
                     f"problems: {problems}")
    for topic, det in summary.get("detections", {}).items():
        lines.append(
            f"bag: {topic}: detections from {det['topic']}: {det['sets']} sets read "
            f"({det['bad']} unreadable), {det['used']} frames matched, "
            f"no_detections {det['no_detections']}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ros2_run = Path(sys.argv[0]).name == "bag_runner"
    p = argparse.ArgumentParser(
        prog="ros2 run sgclip_ros bag_runner" if ros2_run else "python -m sgclip_ros.tools.bag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--in", dest="in_bag", required=True, help="input rosbag2 (dir or file)")
    p.add_argument("--out", dest="out_bag", required=True, help="output bag directory (new)")
    p.add_argument("--jsonl", help="also write each graph's to_dict() as one JSON line")
    p.add_argument("--topics", help="comma-separated image topics (default: all image topics)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model-dir",
        help="model folder (model.safetensors, config.json, manifest.json), relative to the "
        "current directory; a bare name not found here: the package's models/NAME",
    )
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
    p.add_argument(
        "--backend",
        default="auto",
        help="auto (default), tensorrt, onnxruntime, onnxruntime-int8, aoti or torch: "
        "as the node's `backend`",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument(
        "--detections",
        help="Detection2DArray topics of the bag, one per --topics entry (same order)",
    )
    p.add_argument(
        "--detection-tolerance-s",
        type=float,
        default=0.0,
        help="match the nearest detection set within S seconds (default 0: exact stamps)",
    )
    p.add_argument("--depth", help="aligned depth Image topics, one per --topics entry")
    p.add_argument("--camera-info", help="CameraInfo topics, one per --topics entry")
    p.add_argument(
        "--depth-tolerance-s",
        type=float,
        default=0.02,
        help="pair the nearest depth within S seconds (default 0.02)",
    )
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
