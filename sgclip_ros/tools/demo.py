"""`make demo`: a ShapesWorld camera, the real perception node and a listener, as processes.

Needs no camera, GPU, network or LLM. Writes demo_out/: annotated frames (PNG), a contact
sheet and the scene graphs as JSONL. Uses models/shapes_default when it exists, else a clearly
labelled untrained tiny model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from sgclip_ros.ros.params import load_defaults
from sgclip_ros.tools.procs import ros_env, start_module, stop

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "shapes_default"


def demo_params(out: Path, model_dir: str) -> Path:
    """The shipped defaults, plus annotated output and the demo's model."""
    params = load_defaults(REPO / "config" / "sgclip.yaml")
    params.update(
        publish_annotated=True,
        model_root=str(REPO / "models"),
        model_dir=model_dir,
        reliability="reliable",
        cameras=["/camera/image_raw"],
    )
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("SGCLIP_DEMO_DOMAIN", "42"))
    )
    parser.add_argument("--out", default=str(REPO / "demo_out"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rate", type=float, default=4.0, help="camera frames per second")
    parser.add_argument("--model-dir", default=None, help="model folder under models/")
    parser.add_argument("--timeout", type=float, default=100.0)
    args = parser.parse_args(argv)
    start = time.monotonic()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model_dir = args.model_dir or (
        DEFAULT_MODEL
        if (REPO / "models" / DEFAULT_MODEL / "manifest.json").is_file()
        else "untrained-tiny"
    )
    env = ros_env(args.domain_id)
    node = start_module(
        "sgclip_ros.nodes.perception_node",
        ["--ros-args", "--params-file", str(demo_params(out, model_dir))],
        env,
        cwd=REPO,
    )
    recorder = start_module(
        "sgclip_ros.tools.demo_recorder",
        ["--out", str(out), "--duration", str(args.timeout), "--idle", "4"],
        env,
        cwd=REPO,
    )
    camera = start_module(
        "sgclip_ros.tools.replay",
        ["--frames", str(args.frames), "--rate", str(args.rate)],
        env,
        cwd=REPO,
    )
    try:
        camera.wait(args.timeout)
        code = recorder.wait(max(5.0, args.timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        print("demo: timed out", flush=True)
        code = 1
    finally:
        for proc in (camera, recorder, node):
            stop(proc)
    sheet = out / "contact_sheet.png"
    print(
        f"demo: model {model_dir}; outputs in {out}/ (scene_graphs.jsonl, frames/, "
        f"{sheet.name if sheet.exists() else 'no contact sheet'}); "
        f"{time.monotonic() - start:.0f} s",
        flush=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
