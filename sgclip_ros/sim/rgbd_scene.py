"""RGB-D ShapesWorld: clips of solids on a ground plane with known 3D geometry and relations.

A pinhole camera (:class:`~sgclip_ros.sim.rgbd_raycast.Camera`, 640x480 by default, 0.25-0.45
m above the floor, pitched down 5 degrees) looks at 3-6 solids standing on a light tiled floor,
sometimes before a back wall: boxes ("square"), spheres ("circle"), square pyramids
("triangle") and vertical cylinders, in ShapesWorld colours. Some stand next to each other
(closer than ``near_m``), some behind others (partly hidden), some far apart; boxes carry
another solid (touching: ``on top of``), sometimes a third one (``above`` the bottom box). Solids
(a stack as one) move at 0-0.25 m/s over the floor. Their centres are 0.5-5 m from the camera.

Every frame gives what an RGB-D camera publishes (rgb8, depth as 16UC1 millimetres with 0 = no
data and as 32FC1 metres with NaN = no data, CameraInfo K) and the truth: an instance id image
(-1: background), and per object its bounding-box centre and exact axis-aligned extent in the
optical frame, the centroid of its visible surface (the mean of its visible pixels'
back-projected points, noise-free depth, true mask) and its 2D box. The ground-truth relations
are :func:`~sgclip_ros.core.geometry.metric_relations` itself applied to the true geometry
(visible-surface centroid, true extents, valid_fraction 1), so a benchmark measures estimation
error, not the difference between two rules.

No ground-truth fact is ambiguous: a draw is rejected and drawn again whenever a quantity a rule
thresholds (centroid distance vs ``near_m``, depth difference vs ``depth_margin_m``, vertical
gap vs ``vertical_margin_m`` and ``contact_m``, the overlap test of ``on top of``, lateral gap
vs ``lateral_margin_m``) lies within ``MARGIN_FRACTION`` (25%) of its threshold in any frame.
This is what makes the ground truth well defined, not a kindness to the estimator: a fact 2 mm
from its threshold is a coin flip under any sensor. Likewise every object shows at least
``MIN_VISIBLE_PIXELS`` pixels and 60% of its own silhouette, and stays wholly inside the image.

Limit of the rule, not of the data: metric_relations bounds objects by boxes axis-aligned in the
*optical* frame. Under a pitch p a solid of depth d looks taller along ``up`` by d*sin(2p) (half
at each end), so a stack's gap shrinks by the two depths times sin(2p)/2: at 5 degrees a stack
of 0.2 m deep boxes still reads ``on top of`` (gap -3.5 cm, contact 5 cm); at 15 degrees it
reads neither that nor ``above``, and such draws are rejected as ambiguous or kept with that
truth. Steeper cameras need extents taken in a gravity-aligned frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from sgclip_ros.core.geometry import (
    MARGIN_SCALE,
    GeometrySettings,
    ObjectGeometry,
    metric_relations,
    pair_margins,
    perpendicular_axes,
)
from sgclip_ros.core.scene_graph import Box
from sgclip_ros.sim.rgbd_plan import (  # noqa: F401  (re-exported: the scene's vocabulary)
    DISTANCE_RANGE_M,
    FRAME_PERIOD_NS,
    Placement,
    Style,
    draw_recipe,
    draw_scene,
)
from sgclip_ros.sim.rgbd_raycast import Camera, Solid, ray_cast, shade
from sgclip_ros.sim.shapes_scene import COLOUR_RGB

START_STAMP_NS = 1_700_000_000_000_000_000
MARGIN_FRACTION = 0.25  # quantities stay this share of their threshold away from it
MIN_VISIBLE_PIXELS = 100
MIN_VISIBLE_SHARE = 0.6  # of the object's own silhouette (the rest hidden by others)
MAX_DEPTH_M = 10.0  # farther: no data, as a real sensor's range


@dataclass
class ObjectTruth:
    """One object in one frame, in the optical frame (m)."""

    name: str
    category: str
    colour: str
    centre: tuple[float, float, float]  # centre of the solid's bounding box
    extent_min: tuple[float, float, float]  # exact axis-aligned extent of the solid
    extent_max: tuple[float, float, float]
    surface_centroid: tuple[float, float, float]  # mean of its visible surface points
    box: Box  # of the visible pixels, integer, end exclusive
    visible_pixels: int
    visible_share: float  # visible / own silhouette
    up: tuple[float, float, float] | None = None  # the camera's up in the optical frame
    height_span: tuple[float, float] | None = None  # exact (low, high) along up
    across_span: tuple | None = None  # exact ((min, max), (min, max)) across up

    def geometry(self) -> ObjectGeometry:
        """The true geometry as metric_relations sees it (the ground truth's input): the
        solid's exact spans along and across up, as the estimate measures them on its points."""
        return ObjectGeometry(
            self.surface_centroid, self.extent_min, self.extent_max, 1.0,
            self.up, self.height_span, self.across_span,
        )


@dataclass
class RGBDFrame:
    """What the camera publishes for one frame, and the truth about it."""

    stamp_ns: int
    rgb: np.ndarray  # [H, W, 3] uint8
    depth_mm: np.ndarray  # [H, W] uint16 (16UC1), 0 = no data
    depth_m: np.ndarray  # [H, W] float32 (32FC1), NaN = no data
    instance_ids: np.ndarray  # [H, W] int32, -1 = background
    objects: list[ObjectTruth]  # index = instance id
    relations: set[tuple[str, str, str]]  # ground-truth metric relations


@dataclass
class RGBDClip:
    """A clip of frames from one camera, with how many draws it took."""

    seed: int
    camera: Camera
    settings: GeometrySettings
    frames: list[RGBDFrame]
    placements: list[Placement] = field(default_factory=list)  # world solids at frame 0
    style: Style = Style()
    attempts: int = 1
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> draws rejected

    @property
    def k(self) -> list[float]:
        return self.camera.k

    def intrinsics(self):
        return self.camera.intrinsics()

    def stacked(self) -> set[str]:
        """Names of the objects resting on another or carrying one (from the world solids, so
        whatever the relation rule makes of them)."""
        solids = [p.solid for p in self.placements]
        out = set()
        for i, upper in enumerate(solids):
            for j, lower in enumerate(solids):
                rests = abs(upper.bottom - lower.top) < 1e-9 and all(
                    abs(upper.centre[a] - lower.centre[a]) < (upper.size[a] + lower.size[a]) / 2
                    for a in (0, 1)
                )
                if i != j and rests:
                    out |= {f"obj{i}", f"obj{j}"}
        return out


def scene_settings(camera: Camera, base: GeometrySettings = GeometrySettings()) -> GeometrySettings:
    """``base`` with ``up`` set to the camera's world up in its optical frame."""
    return replace(base, up=camera.up_optical)


def add_depth_noise(depth_m: np.ndarray, rng: np.random.Generator, noise_frac: float = 0.01,
                    missing_frac: float = 0.2) -> np.ndarray:
    """A noisy float32 copy: Gaussian noise of sigma ``noise_frac`` x depth, and a random
    ``missing_frac`` of the pixels set to NaN (no data)."""
    noisy = depth_m.astype(np.float32) * (1.0 + noise_frac * rng.standard_normal(depth_m.shape))
    noisy = noisy.astype(np.float32)
    noisy[rng.random(depth_m.shape) < missing_frac] = np.nan
    return noisy


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """16UC1: millimetres rounded to the nearest, 0 where there is no data."""
    valid = np.isfinite(depth_m)
    return np.where(valid, np.round(np.where(valid, depth_m, 0) * 1000.0), 0).astype(np.uint16)


# ----------------------------------------------------------------------------- ambiguity


def ambiguities(objects: dict[str, ObjectGeometry], settings: GeometrySettings,
                fraction: float = MARGIN_FRACTION) -> list[str]:
    """Every enabled fact whose margin (geometry.pair_margins: how far past or short of its
    threshold it is) is within ``fraction`` of that threshold; empty = nothing is ambiguous."""
    names, margins = pair_margins(objects, settings)
    problems = []
    for predicate in settings.enabled if margins else ():
        scale = getattr(settings, MARGIN_SCALE[predicate])
        close = np.abs(margins[predicate]) < fraction * scale
        np.fill_diagonal(close, False)
        for i, j in zip(*np.nonzero(close)):
            value = margins[predicate][i, j]
            pair = f"{names[i]}-{names[j]}"
            problems.append(f"{pair} {predicate} margin {value:+.3f} (scale {scale})")
    return problems


# ----------------------------------------------------------------------------- rendering


def object_truths(camera: Camera, solids: list[Solid], ids: np.ndarray, depth_m: np.ndarray,
                  silhouettes: list[int]) -> list[ObjectTruth]:
    """The truth of every solid in a rendered frame (see the module doc)."""
    rot, pos = camera.rotation, camera.position
    out = []
    for index, solid in enumerate(solids):
        rows, cols = np.nonzero(ids == index)
        z = depth_m[rows, cols].astype(np.float64)
        points = np.stack([(cols + 0.5 - camera.cx) * z / camera.fx,
                           (rows + 0.5 - camera.cy) * z / camera.fy, z], axis=1)
        axes = rot.T  # optical axes as world vectors
        high, low = _support_span(solid, axes, pos)
        empty = rows.size == 0
        out.append(ObjectTruth(
            name=f"obj{index}", category=solid.category, colour=solid.colour,
            centre=tuple(float(v) for v in camera.to_optical(np.asarray(solid.centre))),
            extent_min=tuple(float(v) for v in low), extent_max=tuple(float(v) for v in high),
            surface_centroid=(math.nan,) * 3 if empty else tuple(float(v) for v in points.mean(0)),
            box=Box(0, 0, 0, 0) if empty else Box(int(cols.min()), int(rows.min()),
                                                  int(cols.max()) + 1, int(rows.max()) + 1),
            visible_pixels=int(rows.size),
            visible_share=rows.size / silhouettes[index] if silhouettes[index] else 0.0,
            up=camera.up_optical, **_up_spans(solid, axes, pos, camera.up_optical),
        ))
    return out


def _support_span(solid: Solid, directions: np.ndarray, pos: np.ndarray):
    """The solid's exact (highest, lowest) extent along each optical direction (as world rows)."""
    high = [solid.support(e) - e @ pos for e in directions]
    low = [-solid.support(-e) - e @ pos for e in directions]
    return high, low


def _up_spans(solid: Solid, axes: np.ndarray, pos: np.ndarray, up) -> dict:
    """The solid's exact span along ``up`` and across it (the axes geometry uses)."""
    unit = np.asarray(up, float) / np.linalg.norm(up)
    optical = np.vstack([unit, perpendicular_axes(unit)])  # [3, 3]: up, across 1, across 2
    high, low = _support_span(solid, optical @ axes, pos)
    return {
        "height_span": (float(low[0]), float(high[0])),
        "across_span": ((float(low[1]), float(high[1])), (float(low[2]), float(high[2]))),
    }


def _cast(camera: Camera, solids: list[Solid], style: Style):
    """Ray cast; (render, float32 depth with NaN, truths)."""
    render = ray_cast(camera, solids, style.wall_y)
    depth = render.depth.astype(np.float32)
    depth[~np.isfinite(render.depth) | (render.depth > MAX_DEPTH_M)] = np.nan
    return render, depth, object_truths(camera, solids, render.ids, depth,
                                        render.silhouette_pixels)


def _frame(camera, solids, style, stamp_ns, settings) -> RGBDFrame:
    render, depth, truths = _cast(camera, solids, style)
    rgb = shade(camera, render, [COLOUR_RGB[s.colour] for s in solids], style.ground_rgb,
                style.wall_rgb)
    ids = np.where(render.ids >= 0, render.ids, -1).astype(np.int32)
    facts = metric_relations({t.name: t.geometry() for t in truths}, settings)
    return RGBDFrame(stamp_ns, rgb, depth_to_mm(depth), depth, ids, truths, facts)


def render_clip(camera: Camera, placements: list[Placement], frames: int,
                settings: GeometrySettings | None = None, style: Style = Style(),
                seed: int = 0) -> RGBDClip:
    """Render a given (e.g. hand-placed) scene as is: no visibility or ambiguity checks."""
    settings = settings or scene_settings(camera)
    out = []
    for k in range(frames):
        solids = [p.at(k * FRAME_PERIOD_NS * 1e-9) for p in placements]
        out.append(_frame(camera, solids, style, START_STAMP_NS + k * FRAME_PERIOD_NS, settings))
    return RGBDClip(seed, camera, settings, out, list(placements), style)


def render_rgbd_clip(seed: int, frames: int = 6, width: int = 640, height: int = 480,
                     pitch_deg: float = 5.0, settings: GeometrySettings | None = None
                     ) -> RGBDClip:
    """A random clip, deterministic per seed; every frame passes the checks of the module doc.

    ``settings`` None: the default thresholds with this camera's up vector."""
    rng = np.random.default_rng(seed)
    scale = width / 640.0
    camera = Camera(width, height, 384.0 * scale, 384.0 * scale,
                    round(float(rng.uniform(0.25, 0.45)), 3), pitch_deg)
    settings = settings or scene_settings(camera)
    recipe = draw_recipe(rng)
    rejected: dict[str, int] = {}

    def check(placements, style):
        return check_frames(camera, placements, style, frames, settings)

    placements, style = draw_scene(rng, camera, frames, recipe, check, rejected)
    clip = render_clip(camera, placements, frames, settings, style, seed)
    clip.attempts, clip.rejected = 1 + sum(rejected.values()), rejected
    return clip


def check_frames(camera: Camera, placements: list[Placement], style: Style, frames: int,
                 settings: GeometrySettings) -> str:
    """Why the scene fails the module's checks in some frame ('' when it passes all)."""
    for k in dict.fromkeys([frames - 1, 0, *range(1, frames - 1)]):  # the ends fail first
        solids = [p.at(k * FRAME_PERIOD_NS * 1e-9) for p in placements]
        truths = _cast(camera, solids, style)[2]
        if any(t.visible_pixels < MIN_VISIBLE_PIXELS for t in truths):
            return "too few visible pixels"
        if any(t.visible_share < MIN_VISIBLE_SHARE for t in truths):
            return "hidden by another"
        if ambiguities({t.name: t.geometry() for t in truths}, settings):
            return "ambiguous relation"
    return ""
