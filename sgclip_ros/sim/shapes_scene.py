"""ShapesWorld scenes: shape sprites, lane-based motion plans, ground-truth relations, frames.

Installed with the package, so the demo camera (``sgclip_ros.tools.replay``) renders clips from
an install space; ``training.synth`` builds its datasets (captions, files) on this module.
:func:`render_scene` gives a clip's frames without captions: the same frames as
``training.synth.render_clip(seed, index, frames)`` whenever that clip's first draw can be
narrated (every seed checked so far).

Boxes are integer ``(xmin, ymin, xmax, ymax)`` with the max **exclusive** (one past the last
drawn pixel), like :class:`sgclip_ros.core.scene_graph.Box` and the crop ``img[y1:y2, x1:x2]``.
With that convention the relations of subject s and object o are exactly the issue's:
``left of: s.xmax < o.xmin`` (at least one empty column between them), ``above: s.ymax <
o.ymin``, and ``touching``: ``gap_x <= 2 and gap_y <= 2`` with ``gap_x = max(0, o.xmin - s.xmax,
s.xmin - o.xmax)`` = the number of empty columns between the boxes.

Motion: every shape moves along one axis ``u`` (x or y) inside its own lane on the other axis
``v``. Shapes in different lanes never overlap, so they can pass each other; the two shapes of
a "touch" scenario share a lane and only approach to a gap of 0-2 px. Shapes therefore never
occlude each other, and a shape's tight box is its sprite's box at its position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# The ShapesWorld vocabulary (training.caption_grammar uses the same words): the order matters,
# plans draw (category, colour) pairs by index.
CATEGORIES = ("circle", "square", "triangle", "star")
COLOUR_RGB = {  # exact RGB fills, far from light backgrounds
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 200, 20),
}
COLOURS = tuple(COLOUR_RGB)
TOUCH_GAP = 2
SCENARIOS = ("pass", "approach", "separate")
MIN_SCENE_FRAMES = 4  # a clip must be long enough to show an order of events


class PlanError(RuntimeError):
    """A random draw that does not fit the canvas; the caller draws again."""


@dataclass(frozen=True)
class Shape:
    """One shape of a clip: its labels and its tight boolean sprite."""

    category: str
    colour: str
    sprite: np.ndarray  # [h, w] bool, tight (no empty border rows or columns)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the sprite."""
        return int(self.sprite.shape[1]), int(self.sprite.shape[0])


@dataclass
class ScenePlan:
    """Everything needed to render and annotate a clip."""

    width: int
    height: int
    background: np.ndarray  # [H, W, 3] uint8
    shapes: list[Shape]
    positions: np.ndarray  # [T, n, 2] int: top-left (x, y) of each sprite per frame
    subject: int  # index of the shape whose motion the caption narrates
    object: int
    scenario: str
    horizontal: bool  # motion along x (lanes are rows) or along y

    def boxes(self, frame: int) -> list[tuple[int, int, int, int]]:
        """Tight boxes (xmin, ymin, xmax exclusive, ymax exclusive) of every shape."""
        out = []
        for shape, (x, y) in zip(self.shapes, self.positions[frame], strict=True):
            w, h = shape.size
            out.append((int(x), int(y), int(x) + w, int(y) + h))
        return out


def relations(s: tuple[int, ...], o: tuple[int, ...]) -> set[str]:
    """Ground-truth relations of subject box ``s`` to object box ``o`` (see module doc)."""
    found = set()
    if s[2] < o[0]:
        found.add("left of")
    if s[0] > o[2]:
        found.add("right of")
    if s[3] < o[1]:
        found.add("above")
    if s[1] > o[3]:
        found.add("below")
    gap_x = max(0, o[0] - s[2], s[0] - o[2])
    gap_y = max(0, o[1] - s[3], s[1] - o[3])
    if gap_x <= TOUCH_GAP and gap_y <= TOUCH_GAP:
        found.add("touching")
    return found


def boxes_overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ----------------------------------------------------------------------------- sprites


def make_sprite(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Tight boolean mask of a shape about ``size`` px across (no anti-aliasing: exact fills)."""
    pad = 4
    canvas = np.zeros((size + 2 * pad, size + 2 * pad), np.uint8)
    c = (size + 2 * pad) / 2.0
    r = size / 2.0
    if category == "circle":
        cv2.circle(canvas, (int(round(c)), int(round(c))), int(round(r)), 1, -1, cv2.LINE_8)
    elif category == "square":
        half = r * 0.88
        cv2.rectangle(canvas, (round(c - half), round(c - half)),
                      (round(c + half), round(c + half)), 1, -1, cv2.LINE_8)
    else:
        points = _polygon(category, c, r, rng)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1, cv2.LINE_8)
    ys, xs = np.nonzero(canvas)
    return canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(bool)


def _polygon(category: str, c: float, r: float, rng: np.random.Generator) -> np.ndarray:
    if category == "triangle":
        flip = -1.0 if rng.random() < 0.5 else 1.0  # pointing up or down
        angles = [-math.pi / 2, math.pi / 6, 5 * math.pi / 6]
        return np.array([(c + r * math.cos(a), c + flip * r * math.sin(a)) for a in angles])
    if category == "star":
        turn = rng.uniform(0, 2 * math.pi / 5)
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = turn - math.pi / 2 + k * math.pi / 5
            points.append((c + radius * math.cos(angle), c + radius * math.sin(angle)))
        return np.array(points)
    raise ValueError(f"unknown category {category!r}")


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Light uniform or mildly graded background; every channel stays >= 190, far from any
    shape colour (each of which has a channel <= 60)."""
    base = rng.uniform(205, 245, size=3)
    background = np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (np.cos(angle) * np.linspace(-1, 1, width)[None, :]
                + np.sin(angle) * np.linspace(-1, 1, height)[:, None])
        background = background + rng.uniform(4, 12) * ramp[..., None]
    return np.clip(np.round(background), 190, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- motion


def plan_scene(rng: np.random.Generator, frames: int, attempts: int = 50) -> ScenePlan:
    """Draw a clip whose narrated pair changes relations; retries draws that do not fit."""
    if frames < MIN_SCENE_FRAMES:
        raise ValueError(f"clips need at least {MIN_SCENE_FRAMES} frames, got {frames}")
    for _ in range(attempts):
        try:
            return _draw_plan(rng, frames)
        except PlanError:
            continue
    raise RuntimeError(f"no ShapesWorld scene fitted after {attempts} draws")


def _draw_plan(rng: np.random.Generator, frames: int) -> ScenePlan:
    # Even sizes: some mp4 encoders pad or refuse odd frame sizes.
    width, height = 2 * int(rng.integers(80, 161)), 2 * int(rng.integers(60, 121))
    count = int(rng.integers(2, 5))
    scenario = SCENARIOS[int(rng.integers(len(SCENARIOS)))]
    horizontal = bool(rng.random() < 0.5)
    lane_room = height if horizontal else width
    lanes = count if scenario == "pass" else count - 1
    max_size = min(40, lane_room // lanes - 8)
    if max_size < 14:
        raise PlanError("canvas too small for the lanes")
    combos = [(c, k) for c in CATEGORIES for k in COLOURS]
    picks = rng.choice(len(combos), size=count, replace=False)
    shapes = []
    for index in picks:
        category, colour = combos[int(index)]
        size = int(rng.integers(14, max_size + 1))
        shapes.append(Shape(category, colour, make_sprite(category, size, rng)))
    extents = [(s.size if horizontal else s.size[::-1]) for s in shapes]  # (u, v) extents
    v_pos = _lane_positions(rng, extents, scenario, lane_room)
    u_room = width if horizontal else height
    u_pos = _u_tracks(rng, extents, scenario, u_room, frames)
    uv = np.stack([u_pos, np.broadcast_to(v_pos, u_pos.shape)], axis=-1)
    positions = uv if horizontal else uv[..., ::-1]
    # Shapes 0 and 1 are the narrated pair; shuffle so track ids carry no role.
    order = rng.permutation(count)
    plan = ScenePlan(
        width, height, make_background(width, height, rng), [shapes[i] for i in order],
        np.ascontiguousarray(positions[:, order]).astype(np.int64),
        int(np.flatnonzero(order == 0)[0]), int(np.flatnonzero(order == 1)[0]),
        scenario, horizontal,
    )
    _check_plan(plan)
    return plan


def _lane_positions(rng: np.random.Generator, extents: list[tuple[int, int]], scenario: str,
                    room: int) -> np.ndarray:
    """v coordinate of each shape: shapes 0 and 1 share a lane unless they pass each other."""
    lanes: list[list[int]] = [[0, 1]] if scenario != "pass" else [[0], [1]]
    lanes += [[i] for i in range(2, len(extents))]
    order = list(rng.permutation(len(lanes)))
    if scenario == "pass":  # keep the passing pair in neighbouring lanes
        order.remove(1)
        order.insert(order.index(0) + 1, 1)
    widths = [max(extents[i][1] for i in lanes[k]) for k in order]
    gaps = [int(rng.integers(3, 13)) for _ in order[1:]]
    if scenario == "pass" and rng.random() < 0.5:
        gaps[order.index(0)] = int(rng.integers(1, TOUCH_GAP + 1))  # they touch while passing
    slack = room - sum(widths) - sum(gaps) - 4
    if slack < 0:
        raise PlanError("lanes do not fit")
    v = np.zeros(len(extents), np.int64)
    cursor = 2 + int(rng.integers(0, slack + 1))
    for k, lane_width in zip(order, widths, strict=True):
        for i in lanes[k]:
            v[i] = cursor + (lane_width - extents[i][1]) // 2
        cursor += lane_width + (gaps.pop(0) if gaps else 0)
    return v


def _keyframes(keys: list[tuple[int, int]], frames: int) -> np.ndarray:
    """Integer positions per frame, linear between (frame, value) keys, held before/after."""
    times = np.array([k[0] for k in keys], float)
    values = np.array([k[1] for k in keys], float)
    return np.round(np.interp(np.arange(frames), times, values)).astype(np.int64)


def _u_tracks(rng: np.random.Generator, extents: list[tuple[int, int]], scenario: str,
              room: int, frames: int) -> np.ndarray:
    """[T, n] u coordinates: the narrated pair follows its scenario, the others drift."""
    u = np.zeros((frames, len(extents)), np.int64)
    su, ou = extents[0][0], extents[1][0]
    if scenario == "pass":
        u[:, 0], u[:, 1] = _pass_tracks(rng, su, ou, room, frames)
    else:
        u[:, 0], u[:, 1] = _touch_tracks(rng, su, ou, room, frames, scenario)
    for i in range(2, len(extents)):
        start = int(rng.integers(0, room - extents[i][0] + 1))
        end = int(np.clip(start + rng.integers(-room // 2, room // 2 + 1), 0,
                          room - extents[i][0]))
        t0, t1 = int(rng.integers(0, frames // 3 + 1)), int(rng.integers(2 * frames // 3, frames))
        u[:, i] = _keyframes([(t0, start), (t1, end)], frames)
    return u


def _pass_tracks(rng, su: int, ou: int, room: int, frames: int):
    """Subject starts fully on one side of the object and ends fully on the other."""
    far_before, far_after = int(rng.integers(3, 30)), int(rng.integers(3, 30))
    span = su + far_before + ou + far_after + su
    if span > room - 2:
        raise PlanError("no room to pass")
    o_start = int(rng.integers(su + far_before, room - ou - far_after - su + 1))
    drift = int(rng.integers(-6, 7))
    o_end = int(np.clip(o_start + drift, su + far_before, room - ou - far_after - su))
    forward = rng.random() < 0.5
    before = (min(o_start, o_end) - far_before - su, 0)
    after = (max(o_start, o_end) + ou + far_after, room - su)
    first, last = (before[0], after[0]) if forward else (after[0], before[0])
    t0, t1 = int(rng.integers(0, frames // 4 + 1)), int(rng.integers(3 * frames // 4, frames))
    subject = _keyframes([(t0, first), (t1, last)], frames)
    obj = _keyframes([(t0, o_start), (t1, o_end)], frames)
    return subject, obj


def _touch_tracks(rng, su: int, ou: int, room: int, frames: int, scenario: str):
    """Same lane: the subject approaches the (still) object to a 0-2 px gap, or leaves it."""
    far, touch = int(rng.integers(8, 40)), int(rng.integers(0, TOUCH_GAP + 1))
    if su + far + ou + 2 > room:
        raise PlanError("no room to approach")
    before = rng.random() < 0.5  # subject on the low-u side of the object
    o_pos = (int(rng.integers(su + far + 1, room - ou + 1)) if before
             else int(rng.integers(0, room - ou - far - su)))
    switch = int(rng.integers(frames // 3, 2 * frames // 3 + 1))
    gaps = ([(0, far), (switch, touch)] if scenario == "approach"
            else [(0, touch), (switch, touch), (frames - 1, far)])
    gap = _keyframes(gaps, frames)
    subject = o_pos - gap - su if before else o_pos + ou + gap
    return subject, np.full(frames, o_pos, np.int64)


def _check_plan(plan: ScenePlan) -> None:
    for frame in range(len(plan.positions)):
        boxes = plan.boxes(frame)
        for x0, y0, x1, y1 in boxes:
            if x0 < 0 or y0 < 0 or x1 > plan.width or y1 > plan.height:
                raise PlanError("a shape leaves the canvas")
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes_overlap(boxes[i], boxes[j]):
                    raise PlanError("shapes overlap")


def render_frames(plan: ScenePlan) -> list[np.ndarray]:
    """RGB uint8 frames of the plan: solid fills of the exact colours on the background."""
    frames = []
    for frame in range(len(plan.positions)):
        image = plan.background.copy()
        for shape, (x0, y0, x1, y1) in zip(plan.shapes, plan.boxes(frame), strict=True):
            region = image[y0:y1, x0:x1]
            region[shape.sprite] = COLOUR_RGB[shape.colour]
        frames.append(image)
    return frames


def clip_rng(seed: int, index: int = 0) -> np.random.Generator:
    """The random generator of clip ``index`` of the dataset with ``seed``."""
    return np.random.default_rng([seed, index])


def render_scene(seed: int, index: int = 0, frames: int = 12) -> list[np.ndarray]:
    """RGB uint8 frames of the first scene drawn for ``(seed, index)`` (deterministic)."""
    return render_frames(plan_scene(clip_rng(seed, index), frames))
