"""The offline bag runner: a bag written here goes through the real CLI (a subprocess) and the
SceneGraphs it writes are read back with rosbags; malformed frames are counted, never fatal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sgclip_ros.core.scene_graph import Box, SceneGraph
from sgclip_ros.tools import bag as runner
from sgclip_ros.tools.bag_messages import package_path

REPO = Path(__file__).resolve().parent.parent
RAW, COMPRESSED = "/cam_a/image_raw", "/cam_b/image_raw/compressed"
T0 = 1_700_000_000 * 10**9
PERIOD = 100_000_000
LOG_DELAY = 3_000_000  # log time = stamp + 3 ms, so the two are told apart
WINDOW, STRIDE = 4, 2
COLORS = [(220, 30, 30), (30, 180, 30), (30, 60, 220)]


def _shapes(k: int, h: int = 96, w: int = 128) -> np.ndarray:
    """Three solid shapes drifting right on a light background (RGB)."""
    img = np.full((h, w, 3), 235, np.uint8)
    cv2.rectangle(img, (8 + 3 * k, 10), (34 + 3 * k, 36), COLORS[0], -1)
    cv2.circle(img, (80 - 2 * k, 30), 13, COLORS[1], -1)
    cv2.rectangle(img, (40 + 2 * k, 60), (70 + 2 * k, 86), COLORS[2], -1)
    return img


@dataclass
class Frame:
    topic: str
    stamp: int
    log: int
    msg: object
    valid: bool
    frame_id: str
    reason: str = ""


class BagBuilder:
    def __init__(self):
        self.store = get_typestore(Stores.ROS2_HUMBLE)
        self.frames: list[Frame] = []

    def _header(self, stamp: int, frame_id: str):
        t = self.store.types
        time = t["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
        return t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def image(self, stamp, rgb, encoding="rgb8", pad=0, step_delta=0, log=None, reason=""):
        pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
        rows = np.ascontiguousarray(pixels).reshape(rgb.shape[0], -1)
        rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
        h, w = rgb.shape[:2]
        msg = self.store.types["sensor_msgs/msg/Image"](
            self._header(stamp, "a_optical"),
            h,
            w,
            encoding,
            0,
            rows.shape[1] + step_delta,
            rows.reshape(-1),
        )
        self._add(RAW, stamp, msg, "a_optical", log, reason)

    def compressed(self, stamp, rgb, ext=".jpg", data=None, log=None, reason=""):
        if data is None:
            data = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))[1].reshape(-1)
        fmt = "rgb8; jpeg compressed bgr8" if ext == ".jpg" else "png"
        msg = self.store.types["sensor_msgs/msg/CompressedImage"](
            self._header(stamp, "b_optical"), fmt, np.asarray(data, np.uint8)
        )
        self._add(COMPRESSED, stamp, msg, "b_optical", log, reason)

    def _add(self, topic, stamp, msg, frame_id, log, reason):
        log = stamp + LOG_DELAY if log is None else log
        self.frames.append(Frame(topic, stamp, log, msg, not reason, frame_id, reason))

    def write(self, path: Path, storage: StoragePlugin) -> None:
        with Writer(path, version=8, storage_plugin=storage) as writer:
            conns = {
                RAW: writer.add_connection(RAW, "sensor_msgs/msg/Image", typestore=self.store),
                COMPRESSED: writer.add_connection(
                    COMPRESSED, "sensor_msgs/msg/CompressedImage", typestore=self.store
                ),
            }
            for f in sorted(self.frames, key=lambda f: f.log):
                data = self.store.serialize_cdr(f.msg, type(f.msg).__msgtype__)
                writer.write(conns[f.topic], f.log, data)


def _scene() -> BagBuilder:
    """cam_a: 9 good raw frames (rgb8/bgr8, some padded) plus 3 bad ones; cam_b: 6 good
    jpeg/png frames plus 2 bad ones."""
    b = BagBuilder()
    for k in range(9):
        stamp = T0 + k * PERIOD
        b.image(stamp, _shapes(k), "rgb8" if k % 2 == 0 else "bgr8", pad=4 * (k % 3))
        if k == 2:
            b.image(stamp + PERIOD // 3, _shapes(k), "float_rainbow", reason="unsupported_encoding")
        if k == 4:
            b.image(stamp + PERIOD // 3, _shapes(k), step_delta=-5, reason="step_mismatch")
        if k == 6:  # same stamp again, logged a bit later
            b.image(stamp, _shapes(k), log=stamp + 2 * LOG_DELAY, reason="out_of_order")
    for k in range(6):
        stamp = T0 + PERIOD // 2 + k * PERIOD
        b.compressed(stamp, _shapes(k), ".jpg" if k % 2 == 0 else ".png")
        if k == 3:
            junk = np.random.default_rng(k).integers(0, 256, 300, dtype=np.uint8)
            b.compressed(stamp + PERIOD // 4, None, data=junk, reason="corrupt_compressed")
        if k == 4:
            jpeg = cv2.imencode(".jpg", _shapes(k))[1].reshape(-1)
            b.compressed(stamp + PERIOD // 4, None, data=jpeg[:-200], reason="corrupt_compressed")
    return b


def _expected(frames: list[Frame], topic: str) -> list[tuple[int, list[int], int, str]]:
    """(header stamp, frame stamps, log time, frame_id) per graph the window rule emits."""
    good = sorted((f for f in frames if f.topic == topic and f.valid), key=lambda f: f.log)
    out = []
    for i, f in enumerate(good):
        if (i + 1) % STRIDE == 0:
            window = [g.stamp for g in good[max(0, i - WINDOW + 1) : i + 1]]
            out.append((f.stamp, window, f.log, f.frame_id))
    return out


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sgclip_ros.tools.bag", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def _read_graphs(path: Path) -> list[tuple[int, object]]:
    # AnyReader rebuilds the types from the definitions stored in the bag and checks their
    # hashes: the output must be readable without this package.
    with AnyReader([path], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        conns = [c for c in reader.connections if c.topic == runner.OUTPUT_TOPIC]
        assert [c.msgtype for c in conns] == [runner.SCENE_GRAPH]
        return [(log, reader.deserialize(raw, c.msgtype)) for c, log, raw in reader.messages(conns)]


def _ns(t) -> int:
    return t.sec * 10**9 + t.nanosec


@pytest.mark.parametrize(
    "storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3], ids=["mcap", "sqlite3"]
)
def test_runner_round_trips_a_bag(tmp_path, storage):
    scene = _scene()
    in_bag, out_bag = tmp_path / "in", tmp_path / "out"
    scene.write(in_bag, storage)
    jsonl, summary_path = tmp_path / "graphs.jsonl", tmp_path / "summary.json"
    proc = _run_cli(
        "--in",
        str(in_bag),
        "--out",
        str(out_bag),
        "--untrained-tiny",
        "--window",
        str(WINDOW),
        "--stride",
        str(STRIDE),
        "--jsonl",
        str(jsonl),
        "--summary-json",
        str(summary_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and "UNTRAINED" in proc.stderr
    assert "sgclip bag" in proc.stderr  # the tqdm progress bar
    suffix = ".mcap" if storage is StoragePlugin.MCAP else ".db3"
    assert any(p.suffix == suffix for p in out_bag.iterdir())

    graphs = _read_graphs(out_bag)
    for topic in (RAW, COMPRESSED):
        got = [
            (_ns(m.header.stamp), [_ns(t) for t in m.frame_stamps], log, m.header.frame_id)
            for log, m in graphs
            if m.camera == topic
        ]
        assert got == _expected(scene.frames, topic), topic
    assert len(graphs) == len(_expected(scene.frames, RAW)) + len(
        _expected(scene.frames, COMPRESSED)
    )
    assert all(m.backend == "torch" and m.concepts_id for _, m in graphs)
    assert any(len(m.objects) > 0 for _, m in graphs)  # the built-in proposer found the shapes

    summary = json.loads(summary_path.read_text())
    for topic in (RAW, COMPRESSED):
        want: dict[str, int] = {}
        for f in scene.frames:
            if f.topic == topic and not f.valid:
                want[f.reason] = want.get(f.reason, 0) + 1
        assert summary["rejected"][topic] == want
    assert summary["frames_read"] == len(scene.frames)
    assert summary["frames_processed"] == sum(f.valid for f in scene.frames)
    assert "rejected 3 (out_of_order x1, step_mismatch x1, unsupported_encoding x1)" in proc.stdout

    lines = [SceneGraph.from_dict(json.loads(x)) for x in jsonl.read_text().splitlines()]
    assert [(g.camera, g.stamp_ns) for g in lines] == [
        (m.camera, _ns(m.header.stamp)) for _, m in graphs
    ]


def test_topics_filter_and_output_storage_choice(tmp_path):
    scene = _scene()
    in_bag, out_bag = tmp_path / "in", tmp_path / "out"
    scene.write(in_bag, StoragePlugin.SQLITE3)
    proc = _run_cli(
        "--in",
        str(in_bag),
        "--out",
        str(out_bag),
        "--untrained-tiny",
        "--topics",
        COMPRESSED,
        "--window",
        str(WINDOW),
        "--stride",
        str(STRIDE),
        "--storage",
        "mcap",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert any(p.suffix == ".mcap" for p in out_bag.iterdir())
    graphs = _read_graphs(out_bag)
    assert {m.camera for _, m in graphs} == {COMPRESSED}
    assert len(graphs) == len(_expected(scene.frames, COMPRESSED))


def test_clear_errors_instead_of_tracebacks(tmp_path, capsys):
    scene = _scene()
    in_bag = tmp_path / "in"
    scene.write(in_bag, StoragePlugin.MCAP)
    cases = [
        (["--in", str(tmp_path / "nope"), "--out", str(tmp_path / "o1")], "does not exist"),
        (["--in", str(in_bag), "--out", str(in_bag)], "exists already"),
        (["--in", str(in_bag), "--out", str(tmp_path / "o2"), "--topics", "/x"], "'/x'"),
        (
            ["--in", str(in_bag), "--out", str(tmp_path / "o3"), "--model-dir", str(tmp_path)],
            "no manifest.json",
        ),
        (
            ["--in", str(in_bag), "--out", str(tmp_path / "o4"), "--model-dir", "no/such/dir"],
            "no such folder",
        ),
        (["--in", str(in_bag), "--out", str(tmp_path / "o5"), "--backend", "fast"], "auto"),
    ]
    for args, words in cases:
        extra = [] if "--model-dir" in args else ["--untrained-tiny"]
        assert runner.main([*args, *extra, "--no-progress"]) == 1, args
        err = capsys.readouterr().err
        assert "bag: error:" in err and words in err, err
        assert "Traceback" not in err


def test_rosbags_message_equals_the_rclpy_converters(needs_install):
    from rclpy.serialization import deserialize_message

    from sgclip_ros.msg import SceneGraph as SceneGraphMsg
    from sgclip_ros.ros.conversions import scene_graph_to_msg
    from sgclip_ros.tools.sample_graph import sample_scene_graph

    store = runner.make_typestore()
    graph = sample_scene_graph(n_frames=5, seq=2, positions=True)
    # Rounding and clamping of boxes must agree too.
    graph.objects[0].observations[0].box = Box(-3.4, 2.5, 10.6, 7.49)
    ours = store.serialize_cdr(runner.graph_to_rosbags(store, graph), runner.SCENE_GRAPH)
    # Compared as messages: CDR alignment padding bytes are not defined, so bytes may differ.
    assert deserialize_message(bytes(ours), SceneGraphMsg) == scene_graph_to_msg(graph)


def test_registered_type_hash_matches_the_colcon_build(needs_install):
    store = runner.make_typestore()
    description = json.loads(package_path("msg/SceneGraph.json").read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in description["type_hashes"]}
    assert store.hash_rihs01(runner.SCENE_GRAPH) == hashes[runner.SCENE_GRAPH]


def test_inference_failures_are_counted_not_fatal():
    class FailingPredictor:
        def add_frames(self, *args):
            raise RuntimeError("CUDA out of memory")

    scene = _scene()
    store = runner.make_typestore()
    run = runner.Runner(store, FailingPredictor(), writer=None, out_conn=None, max_pixels=0)
    good = [f for f in scene.frames if f.valid and f.topic == RAW]
    conn = SimpleNamespace(topic=RAW, msgtype="sensor_msgs/msg/Image")
    for f in good:
        run.frame(conn, f.log, store.serialize_cdr(f.msg, conn.msgtype))
    run.frame(conn, 0, b"\x00\x01\x00\x00\x05")  # truncated CDR
    assert run.stats.drops.by_reason(RAW) == {"inference_error": len(good), "bad_message": 1}
    assert run.stats.graphs_written == 0


def test_runner_imports_without_ros_python_packages():
    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'builtin_interfaces'):\n"
        "    sys.modules[name] = None\n"
        "import sgclip_ros.tools.bag as bag\n"
        "bag.make_typestore()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr




# ---- models: the node's backend selection and manifest checks ------------------------------
def _tiny_model(folder: Path, seed: int = 1) -> str:
    """A tiny model folder with its manifest; returns the model id (weights sha256[:16])."""
    from sgclip_ros.core.model import build_model, save_model
    from sgclip_ros.core.model_config import load_model_config
    from sgclip_ros.core.model_store import sha256_file, write_manifest

    weights, _ = save_model(build_model(load_model_config("sgclip-tiny"), seed=seed), folder)
    write_manifest(folder)
    return sha256_file(weights)[:16]


def _small_bag(path: Path, frames: int = 4) -> None:
    b = BagBuilder()
    for k in range(frames):
        b.image(T0 + k * PERIOD, _shapes(k))
    b.write(path, StoragePlugin.MCAP)


def _model_args(model_dir: str, backend: str = "torch") -> SimpleNamespace:
    return SimpleNamespace(untrained_tiny=False, model_dir=model_dir, backend=backend, device="cpu")


def test_model_dir_is_relative_to_the_current_directory(tmp_path):
    """`--model-dir models/NAME` from the folder holding models/ (it was looked up as
    models/NAME/models/NAME)."""
    model_id = _tiny_model(tmp_path / "models" / "mine")
    _small_bag(tmp_path / "in")
    cmd = [sys.executable, "-m", "sgclip_ros.tools.bag", "--in", "in", "--out", "out"]
    cmd += ["--model-dir", "models/mine", "--summary-json", "s.json", "--no-progress"]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    model = json.loads((tmp_path / "s.json").read_text())["model"]
    assert model["id"] == model_id
    assert model["dir"] == os.path.realpath(tmp_path / "models" / "mine")
    assert len(_read_graphs(tmp_path / "out")) == 4  # window 8, stride 1: one graph per frame


def test_the_shipped_model_loads_from_the_repository_root(tmp_path):
    _small_bag(tmp_path / "in", frames=2)
    summary = tmp_path / "s.json"
    proc = _run_cli(
        "--in", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
        "--model-dir", "models/shapes_default", "--summary-json", str(summary), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(summary.read_text())
    assert got["model"]["dir"] == str(REPO / "models" / "shapes_default")
    assert got["untrained"] is False and got["graphs_written"] == 2


def test_a_bare_model_name_falls_back_to_the_package_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no shapes_default here
    choice, folder = runner.load_backend(_model_args("shapes_default"))
    assert Path(folder) == package_path("models/shapes_default").resolve()
    assert not choice.untrained and choice.backend.name == "torch"
    with pytest.raises(FileNotFoundError, match="models/nothing_like_this"):
        runner.load_backend(_model_args("nothing_like_this"))


def test_a_changed_model_file_is_refused_with_one_line(tmp_path, capsys):
    folder = tmp_path / "model"
    model_id = _tiny_model(folder)
    choice, _ = runner.load_backend(_model_args(str(folder)))
    assert choice.backend.model_id == model_id
    config = folder / "config.json"
    config.write_text(config.read_text() + " ")  # changed after the manifest was written
    _small_bag(tmp_path / "in")
    code = runner.main(
        ["--in", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model-dir", str(folder)]
    )
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "out").exists()
    assert err.count("\n") == 1 and err.startswith("bag: error: "), err
    assert "config.json" in err and "manifest" in err


def test_no_file_of_the_model_folder_may_point_outside_it(tmp_path):
    """The folder is the model root: a link to an identical file next to it is still refused."""
    _tiny_model(tmp_path / "other")
    folder = tmp_path / "model"
    _tiny_model(folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(tmp_path / "other" / "model.safetensors")
    with pytest.raises(ValueError, match="outside the model root"):
        runner.load_backend(_model_args(str(folder)))


def test_backend_choice_and_fallback_as_in_the_node(tmp_path, capsys):
    folder = tmp_path / "model"
    _tiny_model(folder)
    choice, _ = runner.load_backend(_model_args(str(folder), backend="onnxruntime"))
    assert choice.backend.name == "torch" and choice.requested == "onnxruntime"
    assert choice.fallbacks and "onnx" in choice.fallbacks[0]
    assert "bag: backend fallback: onnxruntime" in capsys.readouterr().err
    with pytest.raises(ValueError, match="backend must be one of"):
        runner.load_backend(_model_args(str(folder), backend="fast"))


def test_the_readme_commands_check_a_concept_list_offline(tmp_path, needs_install):
    """Both README lines: `ros2 run ... bag_runner` from any folder (a bare model name is the
    installed package's model) and `python -m` from the repository root."""
    from readme import readme
    from ros2_cli import require_ros2

    from sgclip_ros.tools.procs import ros_env

    require_ros2()
    _small_bag(tmp_path / "in")
    concepts = tmp_path / "my.yaml"
    concepts.write_text("categories: [cup, bowl]\nunary: [red, blue]\nbinary: [next to]\n")
    for name, command, cwd in [
        ("installed", "ros2 run sgclip_ros bag_runner --in BAG --out OUT --model-dir "
         "shapes_default --concepts my.yaml --jsonl graphs.jsonl", tmp_path),
        ("source", "python -m sgclip_ros.tools.bag --in BAG --out OUT --model-dir "
         "models/shapes_default --concepts my.yaml --jsonl graphs.jsonl", REPO),
    ]:  # fmt: skip
        jsonl = tmp_path / f"{name}.jsonl"
        argv = readme(
            command,
            {
                "BAG": str(tmp_path / "in"),
                "OUT": str(tmp_path / f"out_{name}"),
                "my.yaml": str(concepts),
                "graphs.jsonl": str(jsonl),
            },
        )
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        proc = subprocess.run(
            argv, cwd=cwd, env=ros_env(0), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        graphs = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert len(graphs) == 4 == len(_read_graphs(tmp_path / f"out_{name}"))
        labels = {o["label"] for g in graphs for o in g["objects"]}
        assert labels and labels <= {"cup", "bowl"}, labels
