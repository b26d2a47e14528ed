"""Colour-blob proposer on synthetic ShapesWorld-like frames drawn with OpenCV."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sgclip_ros.core.proposer import ColorBlobProposer, estimate_background
from sgclip_ros.core.regions import Region

PALETTE = {
    "red": (230, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 230),
    "yellow": (240, 210, 20),
    "magenta": (200, 40, 200),
    "cyan": (20, 200, 210),
    "orange": (250, 130, 10),
    "black": (20, 20, 20),
}
BOX_TOLERANCE_PX = 2


class Scene:
    """Draws shapes on a frame and records which pixels each shape owns (later draws win)."""

    def __init__(self, height: int = 240, width: int = 320, background=(235, 235, 235)):
        self.image = np.empty((height, width, 3), np.uint8)
        self.image[:] = background
        self.owner = np.zeros((height, width), np.int32)  # 0 = background
        self.count = 0

    def _polygon(self, points: np.ndarray, colour) -> None:
        self.count += 1
        cv2.fillPoly(self.image, [points], colour, cv2.LINE_AA)
        cv2.fillPoly(self.owner, [points], self.count, cv2.LINE_8)

    def circle(self, cx: int, cy: int, r: int, colour) -> None:
        self.count += 1
        cv2.circle(self.image, (cx, cy), r, colour, -1, cv2.LINE_AA)
        cv2.circle(self.owner, (cx, cy), r, self.count, -1, cv2.LINE_8)

    def square(self, x: int, y: int, side: int, colour) -> None:
        self._polygon(
            np.array([[x, y], [x + side - 1, y], [x + side - 1, y + side - 1], [x, y + side - 1]]),
            colour,
        )

    def triangle(self, cx: int, cy: int, r: int, colour) -> None:
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        self._polygon(_round_points(cx, cy, r, angles), colour)

    def star(self, cx: int, cy: int, r: int, colour) -> None:
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        self._polygon(np.round(points).astype(np.int32), colour)

    def truth_boxes(self) -> list[tuple[int, int, int, int]]:
        """Box (x1, y1, x2 exclusive, y2 exclusive) of the pixels each shape owns."""
        boxes = []
        for index in range(1, self.count + 1):
            ys, xs = np.nonzero(self.owner == index)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        return boxes

    def with_noise(self, sigma: float, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        noisy = self.image.astype(np.float32) + rng.normal(0, sigma, self.image.shape)
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _round_points(cx, cy, r, angles) -> np.ndarray:
    points = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    return np.round(points).astype(np.int32)


def gradient_background(height: int, width: int) -> np.ndarray:
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    field = np.array([70, 80, 100]) + x * np.array([120, 110, 100]) + y * np.array([30, 40, 20])
    return np.broadcast_to(field, (height, width, 3)).round().astype(np.uint8)


def assert_regions_match(regions: list[Region], truth: list[tuple], frame_shape) -> None:
    """One region per true shape, each box within BOX_TOLERANCE_PX of its shape's box."""
    assert len(regions) == len(truth), [r.box.as_list() for r in regions]
    unmatched = list(truth)
    for region in regions:
        found = np.array(region.box.as_list())
        errors = [np.abs(found - np.array(t)).max() for t in unmatched]
        best = int(np.argmin(errors))
        assert errors[best] <= BOX_TOLERANCE_PX, (region.box, unmatched[best])
        unmatched.pop(best)
        assert_mask_consistent(region, frame_shape)


def assert_mask_consistent(region: Region, frame_shape) -> None:
    mask = region.mask
    assert mask is not None and mask.dtype == bool and mask.shape == frame_shape[:2]
    ys, xs = np.nonzero(mask)
    # Box is the mask's extent, end exclusive, as floats.
    assert region.box.as_list() == [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]
    assert all(isinstance(v, float) for v in region.box.as_list())


def four_shapes(background=(235, 235, 235)) -> Scene:
    scene = Scene(background=background)
    scene.circle(60, 60, 32, PALETTE["red"])
    scene.square(150, 25, 64, PALETTE["green"])
    scene.triangle(260, 70, 40, PALETTE["blue"])
    scene.star(90, 175, 50, PALETTE["yellow"])
    return scene


def test_each_shape_type_gives_one_accurate_region():
    scene = four_shapes()
    regions = ColorBlobProposer().propose(scene.image)
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_masks_cover_their_shapes():
    scene = four_shapes()
    regions = ColorBlobProposer().propose(scene.image)
    for index in range(1, scene.count + 1):
        truth = scene.owner == index
        ious = [(r.mask & truth).sum() / (r.mask | truth).sum() for r in regions]
        assert max(ious) > 0.9


def test_regions_are_sorted_by_area_largest_first():
    scene = Scene()
    for i, radius in enumerate((12, 30, 20, 8)):
        scene.circle(40 + 75 * i, 120, radius, PALETTE["blue"])
    areas = [int(r.mask.sum()) for r in ColorBlobProposer().propose(scene.image)]
    assert len(areas) == 4 and areas == sorted(areas, reverse=True)


def test_touching_shapes_of_different_colours_are_separated():
    scene = Scene()
    scene.square(40, 60, 60, PALETTE["red"])
    scene.square(100, 60, 60, PALETTE["blue"])  # shares the red square's right edge
    scene.circle(230, 90, 30, PALETTE["green"])
    scene.circle(230, 150, 30, PALETTE["orange"])  # overlaps the green circle's bottom
    scene.star(130, 180, 45, PALETTE["magenta"])  # pokes into the squares from below
    regions = ColorBlobProposer().propose(scene.image)
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_same_colour_shapes_apart_are_separate_regions():
    scene = Scene()
    scene.circle(60, 60, 25, PALETTE["red"])
    scene.triangle(200, 150, 40, PALETTE["red"])
    regions = ColorBlobProposer().propose(scene.image)
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_shapes_cut_by_the_frame_border():
    scene = Scene()
    scene.circle(0, 0, 40, PALETTE["cyan"])
    scene.square(280, 200, 80, PALETTE["black"])
    scene.star(160, 120, 40, PALETTE["red"])
    regions = ColorBlobProposer().propose(scene.image)
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


@pytest.mark.parametrize("sigma", [4.0, 10.0])
def test_noisy_background(sigma):
    scene = four_shapes()
    regions = ColorBlobProposer().propose(scene.with_noise(sigma, seed=int(sigma)))
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_gradient_background_with_noise():
    scene = Scene()
    scene.image[:] = gradient_background(*scene.image.shape[:2])
    scene.circle(70, 70, 30, PALETTE["red"])
    scene.square(140, 120, 50, PALETTE["blue"])
    scene.square(190, 120, 50, PALETTE["yellow"])  # touching the blue square
    scene.star(270, 60, 40, PALETTE["green"])
    regions = ColorBlobProposer().propose(scene.with_noise(6.0, seed=9))
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_background_model_follows_a_gradient():
    image = gradient_background(120, 200).astype(np.float32)
    image[40:80, 0:30] = (255, 0, 0)  # an object on the border must not bend the fit
    model = estimate_background(image, tolerance=40)
    truth = gradient_background(120, 200).astype(np.float32)
    assert np.abs(model - truth).max() < 3


@pytest.mark.parametrize("seed", range(4))
def test_random_scenes_on_dark_and_light_backgrounds(seed):
    rng = np.random.default_rng(seed)
    background = (40, 40, 45) if seed % 2 else (225, 225, 220)
    scene = Scene(background=background)
    colours = [c for name, c in PALETTE.items() if not (seed % 2 and name == "black")]
    order = rng.permutation(len(colours))
    for cell in range(6):  # a 3x2 grid keeps shapes apart
        cx, cy = 55 + 105 * (cell % 3), 60 + 120 * (cell // 3)
        size = int(rng.integers(18, 36))
        colour = colours[order[cell]]
        draw = [scene.circle, scene.triangle, scene.star][cell % 3]
        if cell == 4:
            scene.square(cx - size, cy - size, 2 * size, colour)
        else:
            draw(cx, cy, size, colour)
    regions = ColorBlobProposer().propose(scene.with_noise(3.0, seed=seed))
    assert_regions_match(regions, scene.truth_boxes(), scene.image.shape)


def test_min_area_and_max_regions():
    scene = Scene()
    scene.square(20, 20, 4, PALETTE["red"])  # 16 px: below min_area
    for i in range(5):
        scene.square(60 + 50 * i, 100, 20 + 4 * i, PALETTE["blue"])
    regions = ColorBlobProposer().propose(scene.image)
    assert_regions_match(regions, scene.truth_boxes()[1:], scene.image.shape)
    assert len(ColorBlobProposer(min_area=10).propose(scene.image)) == 6
    capped = ColorBlobProposer(max_regions=2).propose(scene.image)
    # The two largest squares are the last two drawn, at x = 260 and x = 210.
    assert [r.box.as_list() for r in capped] == [r.box.as_list() for r in regions[:2]]
    assert [round(r.box.x1 / 10) for r in capped] == [26, 21]


def test_blank_and_invalid_frames():
    proposer = ColorBlobProposer()
    assert proposer.propose(np.full((60, 80, 3), 128, np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        proposer.propose(np.zeros((60, 80, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        proposer.propose(np.zeros((60, 80), np.uint8))
    with pytest.raises(ValueError):
        ColorBlobProposer(min_area=0)
