"""`make demo` end to end: replay, perception node and recorder processes over real DDS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("needs_install")


def test_demo_writes_graphs_annotated_frames_and_a_contact_sheet(tmp_path, ros_domain):
    out = tmp_path / "demo_out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sgclip_ros.tools.demo",
            "--out",
            str(out),
            "--frames",
            "12",
            "--rate",
            "2",
            "--domain-id",
            str(ros_domain),
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = (out / "scene_graphs.jsonl").read_text().splitlines()
    every = [json.loads(line) for line in lines]
    graphs = [g for g in every if g["camera"] == "/camera/image_raw"]
    # One per frame (stride 1); two cameras share the two cores, so a few may be skipped as busy.
    assert len(graphs) >= 8
    assert all(g["objects"] for g in graphs)
    stamps = [g["stamp_ns"] for g in graphs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert len(list((out / "frames").glob("*.png"))) >= 8
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    # The ShapesWorld camera has no depth: no positions, no metric relations.
    assert not any(o.get("position") for g in graphs for o in g["objects"])
    # The RGB-D camera: positions in metres in front of the camera, and metric relations.
    rgbd = [g for g in every if g["camera"] == "/rgbd/color/image_raw"]
    assert len(rgbd) >= 8 and len(every) == len(graphs) + len(rgbd)
    newest = rgbd[-1]
    positions = [o["position"] for o in newest["objects"] if o["position"]]
    assert len(positions) >= 3 and all(0.3 < p[2] < 6.0 for p in positions)
    assert {r["predicate"] for r in newest["relations"]} & {"in front of", "behind", "near"}
    assert len(list((out / "frames_3d").glob("*.png"))) >= 8
    assert (out / "topdown.png").stat().st_size > 5_000
    assert (out / "scene_3d.png").stat().st_size > 10_000
    assert "scene graph" in run.stdout and "relations" in run.stdout


def test_replay_renders_the_training_clip_from_the_installed_package():
    from sgclip_ros.tools.replay import render_frames
    from training.synth import render_clip

    for seed, frames in ((7, 40), (3, 12), (11, 5)):
        want = render_clip(seed, 0, frames=frames).frames
        got = render_frames(seed, frames)
        assert len(got) == frames and all(np.array_equal(a, b) for a, b in zip(got, want))
    short = render_frames(7, 3)  # scenes need 4 frames: the first 3 of a 4-frame clip
    assert len(short) == 3 and all(np.array_equal(a, b) for a, b in zip(short, render_frames(7, 4)))


def test_demo_clears_only_its_own_output_folder(tmp_path, capsys):
    from sgclip_ros.tools import demo

    earlier = tmp_path / "earlier"
    demo.prepare_out(earlier)  # what a demo run does first: the folder carries the marker
    (earlier / "frames").mkdir()
    (earlier / "scene_graphs.jsonl").write_text("{}\n")
    demo.prepare_out(earlier)
    assert [p.name for p in earlier.iterdir()] == [demo.MARKER]
    # Files with the demo's own names are not proof: without the marker, nothing is deleted.
    lookalike = tmp_path / "lookalike"
    (lookalike / "frames").mkdir(parents=True)
    (lookalike / "frames" / "holiday.png").write_bytes(b"mine")
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for folder in (lookalike, foreign):
        assert demo.main(["--out", str(folder), "--domain-id", "1"]) == 2
        err = capsys.readouterr().err
        assert f"{folder}: not empty and not made by this tool" in err
    assert (lookalike / "frames" / "holiday.png").read_bytes() == b"mine"
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert demo.main(["--out", str(tmp_path / "x"), "--model-dir", "nope"]) == 2
    assert "--model-dir nope: no such folder" in capsys.readouterr().err


def test_demo_children_import_the_demos_own_copy(monkeypatch):
    import sgclip_ros
    from sgclip_ros.tools import demo

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", "/more"]))
    path = demo.child_env(5)["PYTHONPATH"].split(os.pathsep)
    assert path == [str(Path(sgclip_ros.__file__).resolve().parents[1]), "/elsewhere", "/more"]
