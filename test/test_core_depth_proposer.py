"""Depth proposer on ray-cast depth: a pinhole camera 1.2 m above a floor, pitched down 35 degrees,
looking at boxes and spheres resting on the floor."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from sgclip_ros.core.depth_proposer import DepthProposer, DepthProposerSettings
from sgclip_ros.core.geometry import Intrinsics

INTRINSICS = Intrinsics(fx=525.0, fy=525.0, cx=320.0, cy=240.0, width=640, height=480)
CAMERA_HEIGHT_M = 1.2
PITCH = math.radians(35)
# The world's axes in the optical frame: right, horizontal forward, up.
RIGHT = np.array([1.0, 0.0, 0.0])
FORWARD = np.array([0.0, -math.sin(PITCH), math.cos(PITCH)])
UP = np.array([0.0, -math.cos(PITCH), -math.sin(PITCH)])

# Objects resting on the floor, at (right, forward) in metres from the camera's foot.
# ("box", x, y, width, depth, height) or ("sphere", x, y, radius)
SCENE = [
    ("box", -0.6, 1.2, 0.3, 0.3, 0.25),
    ("sphere", 0.35, 1.0, 0.12),
    ("box", 0.9, 2.6, 0.5, 0.4, 0.4),
    ("sphere", -0.9, 3.2, 0.25),
    ("box", 0.2, 4.6, 0.6, 0.5, 0.7),
]
# A small box in front of a tall one: touching/overlapping in the image, 0.6 m apart in depth.
PAIR = [("box", 0.0, 1.6, 0.3, 0.3, 0.3), ("box", 0.25, 2.4, 0.4, 0.4, 0.6)]


def _rays() -> np.ndarray:
    """HxWx3 ray per pixel with z = 1 (so the hit distance along it is the depth)."""
    cols = (np.arange(INTRINSICS.width) + 0.5 - INTRINSICS.cx) / INTRINSICS.fx
    rows = (np.arange(INTRINSICS.height) + 0.5 - INTRINSICS.cy) / INTRINSICS.fy
    x, y = np.meshgrid(cols, rows)
    return np.stack([x, y, np.ones_like(x)], axis=2)


def _hit(shape, origin: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Depth at which each ray (world axes, from origin) first hits the shape, inf if never."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if shape[0] == "sphere":
            _, x, y, r = shape
            offset = origin - np.array([x, y, r])
            b = rays @ offset
            a = np.einsum("ijk,ijk->ij", rays, rays)
            disc = b * b - a * (offset @ offset - r * r)
            t = (-b - np.sqrt(disc)) / a
            return np.where((disc >= 0) & (t > 0), t, np.inf)
        _, x, y, w, d, h = shape
        low, high = np.array([x - w / 2, y - d / 2, 0.0]), np.array([x + w / 2, y + d / 2, h])
        t1, t2 = (low - origin) / rays, (high - origin) / rays
        near = np.nanmax(np.minimum(t1, t2), axis=2)
        far = np.nanmin(np.maximum(t1, t2), axis=2)
        return np.where((near <= far) & (near > 0), near, np.inf)


def render(shapes) -> tuple[np.ndarray, np.ndarray]:
    """float32 depth (NaN where nothing is hit) and the index+1 of the shape seen (0 = floor)."""
    rays = _rays() @ np.stack([RIGHT, FORWARD, UP], axis=1)  # into world axes
    origin = np.array([0.0, 0.0, CAMERA_HEIGHT_M])
    with np.errstate(divide="ignore"):
        floor = np.where(rays[..., 2] < 0, -CAMERA_HEIGHT_M / rays[..., 2], np.inf)
    hits = np.stack([floor] + [_hit(s, origin, rays) for s in shapes])
    owner = np.argmin(hits, axis=0)
    depth = np.min(hits, axis=0).astype(np.float32)
    depth[~np.isfinite(depth)] = np.nan
    return depth, owner


def degrade(depth: np.ndarray, seed: int, noise=0.01, missing=0.2) -> np.ndarray:
    """Gaussian noise of ``noise`` x depth and a ``missing`` share of pixels dropped at random."""
    rng = np.random.default_rng(seed)
    out = depth * (1 + noise * rng.standard_normal(depth.shape)).astype(np.float32)
    out[rng.random(depth.shape) < missing] = np.nan
    return out


def true_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def iou(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def match(regions, owner: np.ndarray, count: int) -> list[float]:
    """Best box IoU of any region with each shape's true box."""
    truths = [true_box(owner == k) for k in range(1, count + 1)]
    boxes = [tuple(r.box.as_list()) for r in regions]
    return [max((iou(t, b) for b in boxes), default=0.0) for t in truths]


def test_scene_renders_every_object_in_view():
    _, owner = render(SCENE)
    for k in range(1, len(SCENE) + 1):
        assert (owner == k).sum() > 500, f"object {k} barely visible: fix the scene"


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_every_object_found_and_nothing_else(seed):
    depth, owner = render(SCENE)
    if seed is not None:
        depth = degrade(depth, seed)
    regions = DepthProposer().propose(depth, INTRINSICS)
    assert min(match(regions, owner, len(SCENE))) >= 0.8  # measured >= 0.94
    assert len(regions) == len(SCENE)
    for region in regions:
        assert region.mask.shape == depth.shape and region.mask.dtype == bool
        assert true_box(region.mask) == tuple(int(v) for v in region.box.as_list())
        assert 0 < region.confidence <= 1
        # the mask lies on one object, not on the floor around it
        hit = np.bincount(owner[region.mask], minlength=len(SCENE) + 1)
        assert hit[1:].max() >= 0.9 * region.mask.sum()
    confidences = [r.confidence for r in regions]
    if seed is None:
        assert confidences == pytest.approx([1.0] * len(regions))
    else:  # 20% of the pixels are missing
        assert all(0.7 < c < 0.9 for c in confidences)


def test_stronger_noise_with_thresholds_to_match():
    depth, owner = render(SCENE)
    settings = DepthProposerSettings(plane_threshold_m=0.03, min_height_m=0.05)
    regions = DepthProposer(settings).propose(degrade(depth, seed=6, noise=0.02), INTRINSICS)
    assert len(regions) == len(SCENE)
    assert min(match(regions, owner, len(SCENE))) >= 0.8


@pytest.mark.parametrize("seed", [None, 3])
def test_floor_alone_gives_no_region_and_the_floor_plane(seed):
    depth, _ = render([])
    if seed is not None:
        depth = degrade(depth, seed, missing=0.3)
    proposer = DepthProposer()
    assert proposer.propose(depth, INTRINSICS) == []
    normal, d = proposer.last_plane
    assert np.degrees(np.arccos(np.clip(np.dot(normal, UP), -1, 1))) < 1.0
    assert d == pytest.approx(CAMERA_HEIGHT_M, abs=0.02)


@pytest.mark.parametrize("seed", [None, 4, 5])
def test_touching_objects_at_different_depths_separate(seed):
    depth, owner = render(PAIR)
    front, back = true_box(owner == 1), true_box(owner == 2)
    # the scene is the hard case: the image boxes overlap
    assert front[0] < back[2] and back[0] < front[2] and front[1] <= back[3]
    if seed is not None:
        depth = degrade(depth, seed)
    regions = DepthProposer().propose(depth, INTRINSICS)
    assert len(regions) == 2
    assert min(match(regions, owner, 2)) >= 0.8  # measured >= 0.95
    for region in regions:
        hit = np.bincount(owner[region.mask], minlength=3)
        assert hit[1:].max() >= 0.9 * region.mask.sum()  # not a merge of both


def test_no_data_gives_no_regions():
    proposer = DepthProposer()
    nan = np.full((480, 640), np.nan, np.float32)
    assert proposer.propose(nan, INTRINSICS) == []
    assert proposer.last_plane is None
    too_far = np.full((480, 640), 9.0, np.float32)  # beyond max_depth_m
    assert proposer.propose(too_far, INTRINSICS) == []


def test_no_plane_gives_no_regions():
    rng = np.random.default_rng(0)
    clutter = rng.uniform(0.5, 5.0, (480, 640)).astype(np.float32)
    proposer = DepthProposer()
    assert proposer.propose(clutter, INTRINSICS) == []
    assert proposer.last_plane is None


def test_the_previous_plane_is_not_kept():
    proposer = DepthProposer()
    proposer.propose(render(SCENE)[0], INTRINSICS)
    assert proposer.last_plane is not None
    proposer.propose(np.full((480, 640), np.nan, np.float32), INTRINSICS)
    assert proposer.last_plane is None


@pytest.mark.parametrize("shape", [(240, 320), (640, 480), (480, 641)])
def test_wrong_size_is_an_error_naming_both(shape):
    with pytest.raises(ValueError, match="640x480") as error:
        DepthProposer().propose(np.ones(shape, np.float32), INTRINSICS)
    assert f"{shape[1]}x{shape[0]}" in str(error.value)


def test_not_a_single_channel_image_is_an_error():
    with pytest.raises(ValueError, match="single-channel"):
        DepthProposer().propose(np.ones((480, 640, 1), np.float32), INTRINSICS)


def test_millimetres_are_an_error_not_an_empty_result():
    millimetres = (np.nan_to_num(render(SCENE)[0]) * 1000).astype(np.uint16)
    with pytest.raises(ValueError, match="depth_to_metres"):
        DepthProposer().propose(millimetres, INTRINSICS)


def test_same_seed_same_result():
    depth = degrade(render(SCENE)[0], seed=7, missing=0.3)
    settings = DepthProposerSettings(ransac_iterations=20, seed=11)
    runs = []
    for _ in range(2):
        proposer = DepthProposer(settings)
        regions = proposer.propose(depth, INTRINSICS)
        runs.append((proposer.last_plane, regions))
    (plane_a, regions_a), (plane_b, regions_b) = runs
    assert plane_a == plane_b
    assert [r.box for r in regions_a] == [r.box for r in regions_b]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(regions_a, regions_b))
    assert [r.confidence for r in regions_a] == [r.confidence for r in regions_b]


def test_max_objects_keeps_the_best_supported():
    depth, owner = render(SCENE)
    regions = DepthProposer(DepthProposerSettings(max_objects=2)).propose(depth, INTRINSICS)
    sizes = sorted((np.count_nonzero(owner == k) for k in range(1, len(SCENE) + 1)), reverse=True)
    assert len(regions) == 2
    assert regions[0].mask.sum() >= regions[1].mask.sum()
    assert regions[1].mask.sum() >= 0.8 * sizes[1]  # the two largest, not any two


def test_min_pixels_drops_small_objects():
    depth, owner = render(SCENE)
    sizes = sorted(np.count_nonzero(owner == k) for k in range(1, len(SCENE) + 1))
    settings = DepthProposerSettings(min_pixels=int(sizes[0] + sizes[1]) // 2)
    assert len(DepthProposer(settings).propose(depth, INTRINSICS)) == len(SCENE) - 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("plane_threshold_m", 0.0),
        ("plane_threshold_m", float("nan")),
        ("min_height_m", -0.01),
        ("ransac_iterations", 0),
        ("sample_step", 0),
        ("sample_step", 2.5),
        ("min_pixels", 0),
        ("max_objects", 0),
        ("max_depth_m", float("inf")),
        ("max_depth_m", -1.0),
        ("seed", -1),
        ("seed", True),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        replace(DepthProposerSettings(), **{field: value})
