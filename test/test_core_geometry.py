"""3D from aligned depth: robust centroids against known geometry, bad input, metric relations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sgclip_ros.core.geometry import (
    GEOMETRY_PREDICATES,
    GeometrySettings,
    Intrinsics,
    ObjectGeometry,
    depth_to_metres,
    metric_relations,
    object_geometry,
)
from sgclip_ros.core.scene_graph import Box

K = Intrinsics(fx=300.0, fy=300.0, cx=160.0, cy=120.0, width=320, height=240)


def _scene(cards, wall_m: float = 8.0) -> np.ndarray:
    """Depth (m) of fronto-parallel cards (x0, x1, y0, y1, z in metres) before a far wall."""
    depth = np.full((K.height, K.width), wall_m, np.float32)
    v, u = np.mgrid[0 : K.height, 0 : K.width]
    for x0, x1, y0, y1, z in sorted(cards, key=lambda c: -c[4]):  # far first: near ones occlude
        x = (u + 0.5 - K.cx) * z / K.fx
        y = (v + 0.5 - K.cy) * z / K.fy
        depth[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)] = z
    return depth


def _box_of(x0, x1, y0, y1, z) -> Box:
    return Box(
        K.cx + x0 * K.fx / z, K.cy + y0 * K.fy / z, K.cx + x1 * K.fx / z, K.cy + y1 * K.fy / z
    )


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0, 3.5, 5.0])
def test_a_cards_centroid_and_extent_come_back_in_metres(z):
    card = (-0.1 * z, 0.1 * z, -0.05 * z, 0.15 * z, z)  # keeps about the same pixel size
    geo = object_geometry(_scene([card]), K, _box_of(*card))
    assert geo is not None and geo.valid_fraction == 1.0
    assert abs(geo.centroid[2] - z) / z < 1e-3
    assert abs(geo.centroid[0] - 0.0) < 0.01 * z and abs(geo.centroid[1] - 0.05 * z) < 0.01 * z
    # The shrunk box sees the inner half of the card: its extent lies inside the card.
    assert card[0] - 1e-6 <= geo.extent_min[0] < geo.extent_max[0] <= card[1] + 1e-6


def test_noise_missing_pixels_and_background_in_the_mask_are_rejected():
    rng = np.random.default_rng(0)
    card = (-0.3, 0.3, -0.2, 0.2, 3.0)
    depth = _scene([card]) * rng.normal(1.0, 0.01, (K.height, K.width)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.3] = np.nan  # 30% of pixels without depth
    box = _box_of(*card)
    mask = np.zeros(depth.shape, bool)
    # A sloppy mask, 4 px too wide on every side: the wall behind is about a quarter of it.
    mask[int(box.y1) - 4 : int(box.y2) + 4, int(box.x1) - 4 : int(box.x2) + 4] = True
    geo = object_geometry(depth, K, box, mask=mask)
    assert abs(geo.centroid[2] - 3.0) / 3.0 < 0.01
    assert geo.extent_max[2] < 3.5  # the wall at 8 m was rejected as an outlier
    assert 0.6 < geo.valid_fraction < 0.8


def test_too_little_valid_depth_gives_no_position():
    depth = np.full((K.height, K.width), np.nan, np.float32)
    assert object_geometry(depth, K, Box(10, 10, 60, 60)) is None
    assert object_geometry(_scene([]), K, Box(10, 10, 11, 11)) is None  # shrunk to nothing


def test_depth_encodings_and_bad_input_get_clear_errors():
    mm = np.array([[0, 1500], [65535, 2]], np.uint16)
    metres = depth_to_metres(mm, "16UC1")
    assert math.isnan(metres[0, 0]) and metres[0, 1] == pytest.approx(1.5)
    floats = np.array([[np.inf, -1.0], [np.nan, 2.5]], np.float32)
    assert np.isnan(depth_to_metres(floats, "32FC1")).sum() == 3
    with pytest.raises(ValueError, match="depth encoding 'rgb8'"):
        depth_to_metres(mm, "rgb8")
    with pytest.raises(ValueError, match="fx is nan"):
        Intrinsics(float("nan"), 300.0, 160.0, 120.0, 320, 240)
    with pytest.raises(ValueError, match="not calibrated"):
        Intrinsics.from_k([0.0] * 9, 320, 240)
    assert Intrinsics.from_k([300, 0, 160, 0, 310, 120, 0, 0, 1], 320, 240).fy == 310
    with pytest.raises(ValueError, match="intrinsics are for 320x240"):
        object_geometry(np.ones((10, 10), np.float32), K, Box(0, 0, 5, 5))


def _geo(center, size) -> ObjectGeometry:
    lo = tuple(c - s / 2 for c, s in zip(center, size))
    hi = tuple(c + s / 2 for c, s in zip(center, size))
    return ObjectGeometry(tuple(center), lo, hi, 1.0)


def test_metric_relations_of_a_stack_a_neighbour_and_an_object_behind():
    # Optical frame: x right, y down (up is -y), z forward. Sizes 0.2 m cubes.
    table_box = _geo((0.0, 0.0, 2.0), (0.2, 0.2, 0.2))
    on_top = _geo((0.02, -0.2, 2.0), (0.2, 0.2, 0.2))  # resting on table_box
    right = _geo((0.35, 0.0, 2.0), (0.2, 0.2, 0.2))
    far = _geo((0.0, 0.0, 3.0), (0.2, 0.2, 0.2))
    facts = metric_relations({"a": table_box, "b": on_top, "c": right, "d": far})
    assert ("b", "on top of", "a") in facts and ("a", "on top of", "b") not in facts
    assert ("b", "above", "a") not in facts  # touching, not separated by the margin
    assert ("a", "near", "c") in facts and ("c", "near", "a") in facts
    assert ("a", "3d left of", "c") in facts and ("c", "3d right of", "a") in facts
    assert ("a", "in front of", "d") in facts and ("d", "behind", "a") in facts
    assert ("a", "near", "d") not in facts and ("c", "on top of", "a") not in facts
    lifted = _geo((0.0, -0.6, 2.0), (0.2, 0.2, 0.2))
    assert ("e", "above", "a") in metric_relations({"a": table_box, "e": lifted})
    assert ("a", "below", "e") in metric_relations({"a": table_box, "e": lifted})


def test_the_up_vector_and_the_enabled_list_are_honoured():
    low, high = _geo((0, 0, 2.0), (0.2, 0.2, 0.2)), _geo((0, 0.6, 2.0), (0.2, 0.2, 0.2))
    # With up = +y (a camera mounted upside down), the larger y is above.
    flipped = GeometrySettings(up=(0.0, 1.0, 0.0))
    assert ("high", "above", "low") in metric_relations({"low": low, "high": high}, flipped)
    only_near = GeometrySettings(near_m=1.0, enabled=("near",))
    assert {p for _, p, _ in metric_relations({"low": low, "high": high}, only_near)} == {"near"}
    with pytest.raises(ValueError, match="unknown relation"):
        GeometrySettings(enabled=("inside",))
    with pytest.raises(ValueError, match="up must be a non-zero vector"):
        GeometrySettings(up=(0.0, 0.0, 0.0))
    assert len(GEOMETRY_PREDICATES) == len(set(GEOMETRY_PREDICATES)) == 8
