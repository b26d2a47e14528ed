"""`make demo` / `ros2 run sgclip_ros demo`: a ShapesWorld camera, the real perception node and a
listener, as processes.

    ros2 run sgclip_ros demo [--out demo_out] [--frames 40] [--rate 4] [--model-dir NAME]
    python -m sgclip_ros.tools.demo ...   (the same, from a source tree; what `make demo` runs)

Needs no camera, GPU, network or LLM. Config and models come from the package share folder
(`sgclip_ros.ros.params.share_dir()`: share/sgclip_ros when installed, else the source tree).
Two cameras feed one node: the ShapesWorld clip, and an RGB-D camera (solids on a floor, with
aligned depth and CameraInfo) whose graphs carry 3D positions and metric relations. Writes
`--out` (relative to the current directory): annotated frames (PNG), a contact sheet, the scene
graphs of both cameras as JSONL, and for the RGB-D camera `scene_3d.png`: its contact sheet
next to a top-down plot of the object positions and metric relations. An earlier demo output
there (it carries a `.sgclip_demo_out` file) is replaced; any other non-empty folder is refused
and left alone. Uses models/shapes_default when it exists, else a clearly labelled untrained tiny
model. The child processes run this
interpreter on the same copy of sgclip_ros as the demo itself (source tree or install space),
from inside the output folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

import sgclip_ros
from sgclip_ros.ros.params import load_defaults, share_dir
from sgclip_ros.tools.out_dir import prepare_out_dir
from sgclip_ros.tools.procs import ros_env, start_module, stop

DEFAULT_MODEL = "shapes_default"
UNTRAINED = "untrained-tiny"
# Written into every --out the demo creates: only such a folder (or an empty one) is cleared
# for a new run, never one that merely holds files with the demo's names.
MARKER = ".sgclip_demo_out"
READY = ".recorder_ready"  # the listener creates it once it hears the node's topics


CAMERA, RGBD_CAMERA = "/camera/image_raw", "/rgbd/color/image_raw"
RGBD_DEPTH, RGBD_INFO = "/rgbd/depth/image_raw", "/rgbd/camera_info"


def demo_params(out: Path, model_dir: str, share: Path) -> Path:
    """The shipped defaults, plus annotated output, the demo's model and its two cameras: the
    ShapesWorld camera, and an RGB-D camera whose depth gives positions and metric relations."""
    params = load_defaults(share / "config" / "sgclip.yaml")
    params.update(
        publish_annotated=True,
        publish_markers=True,
        publish_detections_3d=True,
        model_root=str(share / "models"),
        model_dir=model_dir,
        reliability="reliable",
        cameras=[CAMERA, RGBD_CAMERA],
        detections=["", ""],
        depth_topics=["", RGBD_DEPTH],
        camera_info_topics=["", RGBD_INFO],
        proposer="depth",  # on frames with depth; the ShapesWorld camera keeps colour blobs
        concepts_file="config/concepts/shapes_3d.yaml",
    )
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def prepare_out(out: Path) -> None:
    """Create ``out`` empty (but for the marker); only an earlier demo output is replaced."""
    prepare_out_dir(out, MARKER)


def child_env(domain_id: int) -> dict[str, str]:
    """ROS env whose PYTHONPATH starts with the folder this demo's sgclip_ros was imported from."""
    env = ros_env(domain_id)
    package_root = str(Path(sgclip_ros.__file__).resolve().parents[1])
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    env["PYTHONPATH"] = os.pathsep.join([package_root, *rest])
    return env


def pick_model(requested: str | None, share: Path) -> str:
    """``requested``, else shapes_default when shipped, else the untrained tiny model."""
    if requested:
        if requested != UNTRAINED and not (share / "models" / requested).is_dir():
            raise ValueError(f"--model-dir {requested}: no such folder in {share / 'models'}")
        return requested
    shipped = (share / "models" / DEFAULT_MODEL / "manifest.json").is_file()
    return DEFAULT_MODEL if shipped else UNTRAINED


def _wait_for(path: Path, deadline: float) -> None:
    """Until ``path`` exists or the monotonic ``deadline`` passes (then the demo goes on)."""
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("SGCLIP_DEMO_DOMAIN", "42"))
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rate", type=float, default=4.0, help="camera frames per second")
    parser.add_argument(
        "--model-dir", default=None, help=f"model folder in the package models/ or {UNTRAINED}"
    )
    parser.add_argument("--timeout", type=float, default=100.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    out = Path(args.out).absolute()
    share = share_dir()
    try:
        model_dir = pick_model(args.model_dir, share)
        prepare_out(out)
        env = child_env(args.domain_id)
    except ValueError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    params = demo_params(out, model_dir, share)
    popen = {"cwd": out}  # not the caller's folder: `-m` would import a sgclip_ros found there
    node = start_module(
        "sgclip_ros.nodes.perception_node", ["--ros-args", "--params-file", str(params)], env,
        **popen,
    )
    recorder = start_module(
        "sgclip_ros.tools.demo_recorder",
        ["--out", str(out), "--duration", str(args.timeout), "--idle", "4", "--cameras", "2",
         "--ready-file", str(out / READY),
         "--image-topic", "/camera/annotated_image", "--rgbd-camera", RGBD_CAMERA,
         "--rgbd-image-topic", "/rgbd/color/annotated_image"],
        env,
        **popen,
    )
    _wait_for(out / READY, start + args.timeout / 2)  # the listener hears the node first
    replay = ["--frames", str(args.frames), "--rate", str(args.rate)]
    cameras = [
        start_module("sgclip_ros.tools.replay", [*replay, "--topic", CAMERA], env, **popen),
        start_module(
            "sgclip_ros.tools.replay",
            [*replay, "--topic", RGBD_CAMERA, "--depth", "--depth-topic", RGBD_DEPTH,
             "--info-topic", RGBD_INFO, "--frame-id", "rgbd_color_optical_frame"],
            env,
            **popen,
        ),
    ]
    try:
        for camera in cameras:
            camera.wait(args.timeout)
        code = recorder.wait(max(5.0, args.timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        print("demo: timed out", flush=True)
        code = 1
    finally:
        for proc in (*cameras, recorder, node):
            stop(proc)
    sheet = out / "contact_sheet.png"
    print(
        f"demo: model {model_dir} from {share / 'models'}; outputs in {out}/ "
        f"(scene_graphs.jsonl, frames/, {sheet.name if sheet.exists() else 'no contact sheet'}, "
        f"3D: {'scene_3d.png' if (out / 'scene_3d.png').exists() else 'no scene_3d.png'}); "
        f"{time.monotonic() - start:.0f} s",
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
