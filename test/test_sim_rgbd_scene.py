"""RGB-D ShapesWorld: rendered depth against the known geometry, stacks, determinism, noise,
ground-truth relations and the ambiguity check that keeps them well defined."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sgclip_ros.core.geometry import ObjectGeometry, depth_to_metres
from sgclip_ros.sim.rgbd_plan import FRAME_PERIOD_NS
from sgclip_ros.sim.rgbd_raycast import Camera, Solid
from sgclip_ros.sim.rgbd_scene import (
    Placement,
    Style,
    add_depth_noise,
    ambiguities,
    check_frames,
    render_clip,
    render_rgbd_clip,
    scene_settings,
)

CAM = Camera(width=320, height=240, fx=192.0, fy=192.0, mount_height_m=0.4, pitch_deg=5.0)
PITCH = math.radians(CAM.pitch_deg)


def _on_floor(kind, x, y, size, colour="red", z0=0.0) -> Placement:
    return Placement(Solid(kind, (x, y, z0 + size[2] / 2), size, colour))


def _optical_points(camera: Camera, depth: np.ndarray, rows, cols) -> np.ndarray:
    """Back-projection as core/geometry.py does it: [N, 3] optical points."""
    z = depth[rows, cols].astype(np.float64)
    x = (cols + 0.5 - camera.cx) * z / camera.fx
    y = (rows + 0.5 - camera.cy) * z / camera.fy
    return np.stack([x, y, z], axis=1)


def _world_yz(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World Y (forward) and Z (up) of optical points, written out for a pitch about x."""
    y, z = points[:, 1], points[:, 2]
    forward = z * math.cos(PITCH) - y * math.sin(PITCH)
    up = CAM.mount_height_m - y * math.cos(PITCH) - z * math.sin(PITCH)
    return forward, up


def test_a_box_face_and_the_floor_back_project_onto_their_known_planes():
    box = _on_floor("box", 0.1, 2.0, (0.3, 0.2, 0.2))  # front face: world Y = 1.9
    frame = render_clip(CAM, [box], frames=1).frames[0]
    # The pixel seeing the centre of the front face (0.1, 1.9, 0.1).
    col, row, _ = CAM.project(np.array([0.1, 1.9, 0.1]))
    row, col = int(row), int(col)
    assert frame.instance_ids[row, col] == 0
    expected = 1.9 / (math.cos(PITCH) - math.sin(PITCH) * (row + 0.5 - CAM.cy) / CAM.fy)
    assert abs(frame.depth_m[row, col] - expected) < 1e-3
    assert abs(frame.depth_mm[row, col] / 1000.0 - expected) <= 0.0005 + 1e-6  # mm rounding
    point = _optical_points(CAM, frame.depth_m, np.array([row]), np.array([col]))
    assert abs(_world_yz(point)[0][0] - 1.9) < 1e-3
    # Every floor pixel (background with depth; no wall here, the sky has none) is on Z = 0.
    rows, cols = np.nonzero((frame.instance_ids == -1) & np.isfinite(frame.depth_m))
    assert rows.size > 10000
    assert np.abs(_world_yz(_optical_points(CAM, frame.depth_m, rows, cols))[1]).max() < 1e-3
    sky = np.isnan(frame.depth_m)
    assert sky[0].all() and (frame.depth_mm[sky] == 0).all()
    metres = depth_to_metres(frame.depth_mm, "16UC1")
    assert np.nanmax(np.abs(metres - frame.depth_m)) <= 0.0005 + 1e-6


def test_sphere_pixels_lie_on_the_sphere_and_inside_the_true_extent():
    ball = _on_floor("sphere", -0.3, 1.5, (0.3, 0.3, 0.3))
    frame = render_clip(CAM, [ball], frames=1).frames[0]
    rows, cols = np.nonzero(frame.instance_ids == 0)
    points = _optical_points(CAM, frame.depth_m, rows, cols)
    centre = np.array(frame.objects[0].centre)
    assert np.allclose(centre, CAM.to_optical(np.array(ball.solid.centre)))
    assert np.abs(np.linalg.norm(points - centre, axis=1) - 0.15).max() < 1e-3
    truth = frame.objects[0]
    assert np.allclose(truth.extent_min, centre - 0.15)
    assert np.allclose(truth.extent_max, centre + 0.15)
    assert np.allclose(truth.surface_centroid, points.mean(axis=0))
    assert truth.surface_centroid[2] < centre[2] - 0.05  # the visible surface is nearer
    assert (truth.box.x1, truth.box.y1) == (cols.min(), rows.min())
    assert (truth.box.x2, truth.box.y2) == (cols.max() + 1, rows.max() + 1)


def _stack_scene():
    base = _on_floor("box", 0.0, 2.0, (0.3, 0.15, 0.2), "blue")
    top = _on_floor("box", 0.02, 2.0, (0.2, 0.12, 0.15), "yellow", z0=0.2)
    beside = _on_floor("sphere", 0.35, 2.0, (0.2, 0.2, 0.2), "green")  # 0.1 m gap to the right
    far = _on_floor("cylinder", -0.6, 3.5, (0.2, 0.2, 0.3), "red")
    return [base, top, beside, far]


def test_ground_truth_relations_of_a_hand_placed_stack():
    clip = render_clip(CAM, _stack_scene(), frames=1, seed=0)
    frame = clip.frames[0]
    facts = frame.relations
    assert ("obj1", "on top of", "obj0") in facts and ("obj0", "on top of", "obj1") not in facts
    assert ("obj1", "above", "obj0") not in facts  # touching: not separated by the margin
    assert ("obj0", "near", "obj2") in facts and ("obj0", "3d left of", "obj2") in facts
    assert ("obj3", "behind", "obj0") in facts and ("obj0", "in front of", "obj3") in facts
    assert ("obj0", "near", "obj3") not in facts
    geos = {t.name: t.geometry() for t in frame.objects}
    assert ambiguities(geos, clip.settings) == []
    assert check_frames(CAM, _stack_scene(), Style(), 1, clip.settings) == ""
    # Lifted by a third box, the top is above the bottom box, and on top of the middle one.
    middle = _on_floor("box", 0.0, 2.0, (0.25, 0.15, 0.15), "red", z0=0.2)
    lifted = _on_floor("box", 0.0, 2.0, (0.15, 0.1, 0.1), "green", z0=0.35)
    facts = render_clip(CAM, _stack_scene()[:1] + [middle, lifted], frames=1).frames[0].relations
    assert ("obj2", "above", "obj0") in facts and ("obj2", "on top of", "obj1") in facts


def test_the_ambiguity_check_flags_quantities_near_a_threshold():
    settings = scene_settings(CAM)

    def geo(x, z, h=0.1):
        return ObjectGeometry((x, 0.0, z), (x - h, -h, z - h), (x + h, h, z + h), 1.0)

    # Centroids exactly near_m apart, depths exactly depth_margin_m apart.
    found = ambiguities({"a": geo(0.0, 2.0), "b": geo(0.5, 2.0)}, settings)
    assert any("near" in p for p in found)
    found = ambiguities({"a": geo(0.0, 2.0), "b": geo(1.5, 2.1)}, settings)
    assert any("in front of" in p or "behind" in p for p in found)
    assert ambiguities({"a": geo(0.0, 2.0), "b": geo(1.5, 3.0)}, settings) == []
    # Two boxes side by side, a lateral gap of exactly lateral_margin_m: rendered and rejected.
    left = _on_floor("box", -0.125, 2.0, (0.2, 0.2, 0.2))
    right = _on_floor("box", 0.125, 2.0, (0.2, 0.2, 0.2), "blue")
    assert check_frames(CAM, [left, right], Style(), 1, settings) == "ambiguous relation"
    right = _on_floor("box", 0.175, 2.0, (0.2, 0.2, 0.2), "blue")  # 0.15 m apart: clear
    assert check_frames(CAM, [left, right], Style(), 1, settings) == ""


@pytest.fixture(scope="module")
def clips():
    return [render_rgbd_clip(seed, frames=3) for seed in range(6)]


def test_random_clips_are_unambiguous_stacks_touch_and_truth_matches_the_render(clips):
    redrawn = stacks = 0
    for clip in clips:
        redrawn += clip.rejected.get("ambiguous relation", 0)
        solids = [p.solid for p in clip.placements]
        for k, frame in enumerate(clip.frames):
            assert frame.stamp_ns - clip.frames[0].stamp_ns == k * FRAME_PERIOD_NS
            geos = {t.name: t.geometry() for t in frame.objects}
            assert ambiguities(geos, clip.settings) == []
            assert frame.relations  # every clip has facts to check
            for t in frame.objects:
                assert t.visible_pixels >= 100 and 0.5 <= np.linalg.norm(t.centre) <= 5.0
                rows, cols = np.nonzero(frame.instance_ids == int(t.name[3:]))
                points = _optical_points(clip.camera, frame.depth_m, rows, cols)
                assert (points >= np.array(t.extent_min) - 1e-3).all()
                assert (points <= np.array(t.extent_max) + 1e-3).all()
        for s, p, o in clip.frames[0].relations:
            if p != "on top of":
                continue
            upper, lower = solids[int(s[3:])], solids[int(o[3:])]
            stacks += 1
            assert abs(upper.bottom - lower.top) < 1e-9  # touching, not floating or sunk
            for axis in (0, 1):  # the upper footprint lies on the lower one's top
                assert abs(upper.centre[axis] - lower.centre[axis]) <= (
                    lower.size[axis] - upper.size[axis]
                ) / 2 + 1e-9
            assert clip.placements[int(s[3:])].velocity == clip.placements[int(o[3:])].velocity
        on_top = {n for s, p, o in clip.frames[0].relations if p == "on top of" for n in (s, o)}
        assert on_top == clip.stacked()  # at 5 degrees of pitch the rule sees every stack
    assert stacks > 0 and redrawn > 0  # the seeds exercise both


def test_clips_are_deterministic_per_seed_and_carry_camera_info(clips):
    again = render_rgbd_clip(2, frames=3)
    first = clips[2]
    assert again.k == first.k == [384.0, 0.0, 320.0, 0.0, 384.0, 240.0, 0.0, 0.0, 1.0]
    for a, b in zip(first.frames, again.frames):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_mm, b.depth_mm)
        assert np.array_equal(a.depth_m, b.depth_m, equal_nan=True)
        assert a.relations == b.relations
    frame = first.frames[0]
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth_mm.dtype == np.uint16 and frame.depth_m.dtype == np.float32
    assert frame.instance_ids.min() == -1 and frame.instance_ids.max() == len(frame.objects) - 1
    assert not np.array_equal(clips[3].frames[0].depth_m, frame.depth_m, equal_nan=True)


def test_depth_noise_scale_and_missing_share():
    depth = np.full((400, 400), 2.0, np.float32)
    depth[:10] = np.nan
    noisy = add_depth_noise(depth, np.random.default_rng(0), noise_frac=0.01, missing_frac=0.2)
    assert np.isnan(depth[:10]).all() and np.nanmax(depth) == 2.0  # the input is untouched
    assert noisy.dtype == np.float32 and np.isnan(noisy[:10]).all()
    body = noisy[10:]
    assert abs(np.isnan(body).mean() - 0.2) < 0.01
    assert abs(np.nanstd(body) / 2.0 - 0.01) < 0.0005 and abs(np.nanmean(body) - 2.0) < 0.001
    same = add_depth_noise(depth, np.random.default_rng(0), noise_frac=0.01, missing_frac=0.2)
    assert np.array_equal(noisy, same, equal_nan=True)
