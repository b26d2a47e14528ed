"""Random scene plans for the RGB-D ShapesWorld: solids, stacks, neighbours and motion.

Only the cheap geometric checks live here (wholly inside the image, centre 0.5-5 m from the
camera, solids on the floor never closer than ``FOOTPRINT_GAP_M``, in every frame);
:mod:`sgclip_ros.sim.rgbd_scene` renders a plan and rejects it on visibility and ambiguity.
World frame as in :mod:`sgclip_ros.sim.rgbd_raycast`: X right, Y forward, Z up, floor Z = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgclip_ros.sim.rgbd_raycast import Camera, Solid
from sgclip_ros.sim.shapes_scene import COLOURS

FRAME_PERIOD_NS = 100_000_000  # 10 Hz
DISTANCE_RANGE_M = (0.5, 5.0)  # of object centres from the camera
FOOTPRINT_GAP_M = 0.02  # solids on the floor never touch or interpenetrate
IMAGE_MARGIN_PX = 2
MIN_EXPECTED_PIXELS = 160  # on the floor: the render then asks for 100 visible pixels
FILL = {"box": 0.8, "sphere": 0.6, "cylinder": 0.7, "pyramid": 0.45}  # of the projected box
GROUND_KINDS = (("box", 0.4), ("sphere", 0.2), ("cylinder", 0.2), ("pyramid", 0.2))
TOP_KINDS = (("box", 0.4), ("sphere", 0.2), ("cylinder", 0.25), ("pyramid", 0.15))


@dataclass(frozen=True)
class Placement:
    """A solid at frame 0 and its velocity over the floor (world X, Y; m/s)."""

    solid: Solid
    velocity: tuple[float, float] = (0.0, 0.0)

    def at(self, seconds: float) -> Solid:
        return self.solid.moved((self.velocity[0] * seconds, self.velocity[1] * seconds, 0.0))


@dataclass(frozen=True)
class Style:
    """Floor and wall colours (light, like ShapesWorld backgrounds); wall_y None: no wall."""

    ground_rgb: tuple[int, int, int] = (225, 225, 215)
    wall_rgb: tuple[int, int, int] = (235, 232, 225)
    wall_y: float | None = None


class _Misfit(Exception):
    """A draw that does not fit; the caller draws again."""


@dataclass(frozen=True)
class Recipe:
    """What a clip holds, drawn once per clip so that redraws do not favour simple scenes."""

    on_floor: int  # solids standing on the floor
    stacks: int  # of them, boxes carrying another solid
    third: bool  # the first stack's top is a box carrying a third solid
    wall: bool


def draw_recipe(rng: np.random.Generator) -> Recipe:
    """3-6 solids on the floor, 0-2 stacks (one in three with a third level), a wall or not."""
    on_floor = int(rng.integers(3, 7))
    stacks = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
    return Recipe(on_floor, stacks, bool(stacks and rng.random() < 0.35), bool(rng.random() < 0.5))


def draw_scene(rng: np.random.Generator, camera: Camera, frames: int, recipe: Recipe,
               check, rejected: dict[str, int], attempts: int = 200):
    """(placements in random instance order, style) as the recipe says, each passing ``check``.

    Built one group (a solid on the floor and the stack on it) at a time: a group is drawn
    again until ``check(placements so far, style)`` returns '' (else a reason, counted in
    ``rejected``), up to 25 times, then the whole scene is drawn again."""
    for _ in range(attempts):
        try:
            placements, style = _draw(rng, camera, frames, recipe, check, rejected)
        except _Misfit:
            continue
        return [placements[i] for i in rng.permutation(len(placements))], style
    raise RuntimeError(f"no RGB-D scene for {recipe} passed the checks in {attempts} draws; "
                       f"rejected: {rejected}")


def _draw(rng, camera: Camera, frames: int, recipe: Recipe, check, rejected):
    light = lambda: tuple(int(v) for v in rng.integers(205, 246, 3))  # noqa: E731
    style = Style(light(), light(), float(rng.uniform(6.0, 8.0)) if recipe.wall else None)
    placed: list[Placement] = []
    on_floor: list[Placement] = []
    for k in range(recipe.on_floor):
        for _ in range(25):
            group = _group(rng, camera, frames, recipe, k, on_floor)
            reason = check(placed + group, style) if group else "does not fit"
            if not reason:
                break
            rejected[reason] = rejected.get(reason, 0) + 1
        else:
            raise _Misfit
        placed += group
        on_floor.append(group[0])
    return placed, style


def _group(rng, camera, frames, recipe: Recipe, k: int, on_floor) -> list[Placement]:
    """The k-th solid on the floor and what stands on it; [] when it does not fit."""
    try:
        base = _place_on_floor(rng, camera, frames, on_floor, "box" if k < recipe.stacks else None)
        group = [base]
        if k < recipe.stacks:
            third = k == 0 and recipe.third
            group.append(_place_on(rng, base, (("box", 1.0),) if third else TOP_KINDS))
            if third:
                group.append(_place_on(rng, group[-1], (("box", 0.5), ("sphere", 0.5))))
    except _Misfit:
        return []
    if not all(_fits(camera, p, frames, MIN_EXPECTED_PIXELS) for p in group[1:]):
        return []
    return group


def _pick(rng: np.random.Generator, weighted) -> str:
    kinds, weights = zip(*weighted)
    return kinds[int(rng.choice(len(kinds), p=np.asarray(weights) / sum(weights)))]


def _size(rng: np.random.Generator, kind: str, room=(0.3, 0.3)) -> tuple[float, float, float]:
    """Full X, Y, Z size; the footprint at most ``room`` (a box top to stand on)."""
    u = lambda lo, hi: float(rng.uniform(lo, max(lo, hi)))  # noqa: E731
    if kind == "box":
        return u(0.08, min(0.3, room[0])), u(0.08, min(0.3, room[1])), u(0.1, 0.35)
    if kind == "sphere":
        d = 2 * u(0.05, min(0.15, min(room) / 2))
        return d, d, d
    if kind == "cylinder":
        d = 2 * u(0.05, min(0.12, min(room) / 2))
        return d, d, u(0.12, 0.35)
    base = u(0.12, min(0.3, min(room)))
    return base, base, u(0.12, 0.3)


def _velocity(rng: np.random.Generator) -> tuple[float, float]:
    if rng.random() < 0.5:
        return 0.0, 0.0
    speed, angle = rng.uniform(0.05, 0.25), rng.uniform(0, 2 * np.pi)
    return float(speed * np.cos(angle)), float(speed * np.sin(angle))


def _place_on_floor(rng, camera: Camera, frames: int, placed: list[Placement],
                    kind: str | None = None) -> Placement:
    """A solid anywhere in view, or next to / behind one already placed (neighbours)."""
    for _ in range(10):
        kind = kind or _pick(rng, GROUND_KINDS)
        size = _size(rng, kind)
        velocity = _velocity(rng)
        if placed and rng.random() < 0.45:
            other = placed[int(rng.integers(len(placed)))]
            ox, oy, _ = other.solid.centre
            if rng.random() < 0.5:  # beside it, on the left or the right
                side = 1.0 if rng.random() < 0.5 else -1.0
                gap = rng.uniform(0.03, 0.35)
                x = ox + side * (other.solid.size[0] / 2 + gap + size[0] / 2)
                y = oy + rng.uniform(-0.1, 0.1)
            else:  # behind it, partly hidden
                x = ox + rng.uniform(-0.2, 0.2)
                y = oy + other.solid.size[1] / 2 + rng.uniform(0.05, 0.8) + size[1] / 2
            if rng.random() < 0.5:  # moving along: the pair stays neighbours over the clip
                velocity = other.velocity
        else:
            y = 0.3 + 4.6 * rng.random() ** 1.4  # more draws near: they fit less often
            x = rng.uniform(-0.95, 0.95) * y * camera.cx / camera.fx
        colour = COLOURS[int(rng.integers(len(COLOURS)))]
        candidate = Placement(Solid(kind, (x, y, size[2] / 2), size, colour), velocity)
        if _fits(camera, candidate, frames, MIN_EXPECTED_PIXELS) and not any(
            _collide(candidate, p, frames) for p in placed
        ):
            return candidate
    raise _Misfit


def _place_on(rng, base: Placement, kinds) -> Placement:
    """A solid resting on ``base``'s top, its footprint inside it, moving with it."""
    b = base.solid
    kind = _pick(rng, kinds)
    size = _size(rng, kind, room=(0.95 * b.size[0], 0.95 * b.size[1]))
    if size[0] > b.size[0] or size[1] > b.size[1]:
        raise _Misfit  # the base is too small for the smallest solid of that kind
    dx = rng.uniform(-1, 1) * (b.size[0] - size[0]) / 2
    dy = rng.uniform(-1, 1) * (b.size[1] - size[1]) / 2
    centre = (b.centre[0] + dx, b.centre[1] + dy, b.top + size[2] / 2)
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    return Placement(Solid(kind, centre, size, colour), base.velocity)


def _times(frames: int) -> np.ndarray:
    return np.arange(frames) * FRAME_PERIOD_NS * 1e-9


def _fits(camera: Camera, p: Placement, frames: int, min_pixels: float = 0.0) -> bool:
    """Wholly inside the image (its bounding box, so conservative), in distance range, and
    likely to cover ``min_pixels`` (the projected bounding box times the kind's fill share).

    A point moving on a line projects onto a line, so the first and last frames suffice for
    the image; the distance is checked in every frame."""
    for t in (0.0, _times(frames)[-1]):
        col, row, z = camera.project(p.at(t).box_corners())
        if np.any(z <= 0.05):
            return False
        area = (col.max() - col.min()) * (row.max() - row.min()) * FILL[p.solid.kind]
        if area < min_pixels:
            return False
        inside_cols = (col >= IMAGE_MARGIN_PX) & (col <= camera.width - IMAGE_MARGIN_PX)
        inside_rows = (row >= IMAGE_MARGIN_PX) & (row <= camera.height - IMAGE_MARGIN_PX)
        if not (inside_cols.all() and inside_rows.all()):
            return False
    for t in _times(frames):
        distance = np.linalg.norm(camera.to_optical(np.asarray(p.at(t).centre)))
        if not DISTANCE_RANGE_M[0] <= distance <= DISTANCE_RANGE_M[1]:
            return False
    return True


def _collide(a: Placement, b: Placement, frames: int) -> bool:
    """Whether two floor footprints come closer than FOOTPRINT_GAP_M in any frame."""
    for t in _times(frames):
        sa, sb = a.at(t), b.at(t)
        gaps = [
            abs(sa.centre[i] - sb.centre[i]) - (sa.size[i] + sb.size[i]) / 2 for i in (0, 1)
        ]
        if max(gaps) < FOOTPRINT_GAP_M:
            return True
    return False
