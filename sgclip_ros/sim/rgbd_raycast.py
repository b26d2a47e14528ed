"""Ray casting for the RGB-D ShapesWorld: a pinhole camera over a ground plane and convex solids.

World frame: X right, Y forward (horizontal), Z up; the ground plane is Z = 0. The camera sits at
(0, 0, ``mount_height_m``) looking along +Y, pitched down by ``pitch_deg``. Its optical frame
(x right, y down, z forward, as in sensor_msgs/CameraInfo) has the world directions ``ex, ey, ez``
(the columns of :attr:`Camera.rotation`).

Each pixel's ray is ``R @ ((col + 0.5 - cx) / fx, (row + 0.5 - cy) / fy, 1)``: exactly the
back-projection of :mod:`sgclip_ros.core.geometry`, with a unit optical-z component, so the ray
parameter ``t`` of a hit *is* its optical depth. Depth images are therefore exact (float32
rounding only), which is what lets the tests ask for 1 mm agreement.

Solids are convex and axis-aligned in the world: boxes, square pyramids (apex up), spheres and
vertical cylinders. Each ray keeps its nearest hit; the solid's index is the instance id.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from sgclip_ros.core.geometry import Intrinsics

KINDS = ("box", "sphere", "cylinder", "pyramid")
# ShapesWorld category of each solid (a cylinder has no 2D counterpart; it keeps its own name).
KIND_CATEGORY = {"box": "square", "sphere": "circle", "pyramid": "triangle", "cylinder": "cylinder"}
LIGHT = np.array([-0.35, -0.55, 0.76]) / np.linalg.norm([-0.35, -0.55, 0.76])  # from up-left
_SIGNS = np.array([[sx, sy, sz] for sz in (-1, 1) for sx in (-1, 1) for sy in (-1, 1)], float)
BACKGROUND_GROUND, BACKGROUND_WALL, BACKGROUND_SKY = -1, -2, -3  # codes in the hit-id buffer


@dataclass(frozen=True)
class Camera:
    """A pinhole RGB-D camera at ``mount_height_m`` above the ground, pitched down."""

    width: int = 640
    height: int = 480
    fx: float = 384.0  # about a RealSense D435's depth stream at 640x480
    fy: float = 384.0
    mount_height_m: float = 0.4
    pitch_deg: float = 5.0

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    @property
    def rotation(self) -> np.ndarray:
        """World directions of the optical axes x, y, z as columns (optical -> world)."""
        p = math.radians(self.pitch_deg)
        ex = [1.0, 0.0, 0.0]
        ey = [0.0, -math.sin(p), -math.cos(p)]  # image down: mostly world -Z
        ez = [0.0, math.cos(p), -math.sin(p)]  # forward, tipped down by the pitch
        return np.array([ex, ey, ez]).T

    @property
    def position(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.mount_height_m])

    @property
    def up_optical(self) -> tuple[float, float, float]:
        """World up (+Z) in the optical frame: the ``up`` of GeometrySettings for this camera."""
        return tuple(float(v) for v in self.rotation.T @ np.array([0.0, 0.0, 1.0]))

    @property
    def k(self) -> list[float]:
        """CameraInfo K, row-major."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_k(self.k, self.width, self.height)

    def to_optical(self, points_world: np.ndarray) -> np.ndarray:
        """World points [..., 3] in the optical frame."""
        return (np.asarray(points_world, float) - self.position) @ self.rotation

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(col, row, depth) of world points; col/row are continuous pixel coordinates."""
        p = self.to_optical(points_world)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.cx + self.fx * p[..., 0] / z, self.cy + self.fy * p[..., 1] / z, z


@functools.lru_cache(maxsize=8)
def ray_directions(camera: Camera) -> np.ndarray:
    """World direction of every pixel's ray, [H, W, 3], with optical z = 1 (read-only)."""
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    optical = np.stack(
        [
            (cols + 0.5 - camera.cx) / camera.fx,
            (rows + 0.5 - camera.cy) / camera.fy,
            np.ones(cols.shape),
        ],
        axis=-1,
    )
    dirs = optical @ camera.rotation.T
    dirs.flags.writeable = False
    return dirs


@dataclass(frozen=True)
class Solid:
    """A convex solid standing axis-aligned in the world: its bounding-box centre and size (m)."""

    kind: str
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # full X, Y, Z extents (a sphere: its diameter three times)
    colour: str = "red"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown solid {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def category(self) -> str:
        return KIND_CATEGORY[self.kind]

    @property
    def bottom(self) -> float:
        return self.centre[2] - self.size[2] / 2

    @property
    def top(self) -> float:
        return self.centre[2] + self.size[2] / 2

    def moved(self, offset) -> Solid:
        return replace(self, centre=tuple(float(c + o) for c, o in zip(self.centre, offset)))

    def box_corners(self) -> np.ndarray:
        """The 8 corners of the bounding box, [8, 3] (bottom four first)."""
        return np.asarray(self.centre) + _SIGNS * np.asarray(self.size) / 2

    def vertices(self) -> np.ndarray:
        """Corners of the bounding box (a pyramid: its base corners and apex)."""
        corners = self.box_corners()
        if self.kind == "pyramid":
            return np.vstack([corners[:4], [self.centre[0], self.centre[1], self.top]])
        return corners

    def support(self, u: np.ndarray) -> float:
        """max over the solid of u . p (exact, so extents along any direction are exact)."""
        u, c, h = np.asarray(u, float), np.asarray(self.centre), np.asarray(self.size) / 2
        if self.kind == "sphere":
            return float(u @ c + h[0] * np.linalg.norm(u))
        if self.kind == "cylinder":
            return float(u @ c + abs(u[2]) * h[2] + h[0] * math.hypot(u[0], u[1]))
        return float(np.max(self.vertices() @ u))

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t of the entry point, its outward normal) per ray [M, 3]; t = inf where it misses."""
        if self.kind == "sphere":
            return _sphere_hit(np.asarray(self.centre), self.size[0] / 2, origin, dirs)
        if self.kind == "cylinder":
            return _cylinder_hit(self, origin, dirs)
        normals, offsets = self._planes()
        return _convex_hit(normals, offsets, origin, dirs)

    def _planes(self) -> tuple[np.ndarray, np.ndarray]:
        """Half-spaces n . p <= d whose intersection is the solid (unit outward normals)."""
        c, h = np.asarray(self.centre), np.asarray(self.size) / 2
        if self.kind == "box":
            normals = np.vstack([np.eye(3), -np.eye(3)])
            return normals, np.concatenate([c + h, -(c - h)])
        base, height = c[2] - h[2], 2 * h[2]
        normals = [[0.0, 0.0, -1.0]]
        offsets = [-base]
        for axis in (0, 1):  # four sides through the apex and a base edge
            for sign in (1.0, -1.0):
                n = np.zeros(3)
                n[axis], n[2] = sign * height, h[axis]
                # At the base edge (p[axis] = c + sign*h, z = base) the plane holds with equality.
                d = sign * height * c[axis] + h[axis] * base + height * h[axis]
                norm = np.linalg.norm(n)
                normals.append(n / norm)
                offsets.append(d / norm)
        return np.array(normals), np.array(offsets)


def _convex_hit(normals, offsets, origin, dirs):
    """Entry of rays into an intersection of half-spaces (Kay-Kajiya slabs, generalised)."""
    denom = dirs @ normals.T  # [M, k]
    num = offsets - normals @ origin  # [k]; > 0: the origin is inside that half-space
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / denom
    t_in = np.where(denom < 0, t, -np.inf)
    t_out = np.where(denom > 0, t, np.inf)
    outside_parallel = ((denom == 0) & (num < 0)).any(axis=1)
    entry = t_in.argmax(axis=1)
    t_near = t_in.max(axis=1)
    hit = (t_near <= t_out.min(axis=1)) & (t_near > 0) & ~outside_parallel
    return np.where(hit, t_near, np.inf), normals[entry]


def _sphere_hit(centre, radius, origin, dirs):
    oc = origin - centre
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = 2.0 * dirs @ oc
    disc = b * b - 4 * a * (oc @ oc - radius * radius)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    t = np.where((disc >= 0) & (t > 0), t, np.inf)
    points = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
    return t, (points - centre) / radius


def _cylinder_hit(solid: Solid, origin, dirs):
    """A vertical cylinder: the infinite cylinder's interval intersected with its Z slab."""
    c, h = np.asarray(solid.centre), np.asarray(solid.size) / 2
    r = h[0]
    ox, oy = origin[0] - c[0], origin[1] - c[1]
    dx, dy, dz = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    a = dx * dx + dy * dy
    b = 2 * (dx * ox + dy * oy)
    disc = b * b - 4 * a * (ox * ox + oy * oy - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(disc)
        t0, t1 = (-b - root) / (2 * a), (-b + root) / (2 * a)
        ta, tb = (c[2] - h[2] - origin[2]) / dz, (c[2] + h[2] - origin[2]) / dz
    slab_in, slab_out = np.fmin(ta, tb), np.fmax(ta, tb)
    side = t0 >= slab_in
    t_near = np.where(side, t0, slab_in)
    hit = (disc >= 0) & (a > 0) & (t_near <= np.fmin(t1, slab_out)) & (t_near > 0)
    t_near = np.where(hit, t_near, np.inf)
    points = origin + np.where(hit, t_near, 0.0)[:, None] * dirs
    radial = np.stack([points[:, 0] - c[0], points[:, 1] - c[1], np.zeros(len(dirs))], 1) / r
    cap = np.zeros_like(radial)
    cap[:, 2] = np.where(dz < 0, 1.0, -1.0)
    return t_near, np.where(side[:, None], radial, cap)


@dataclass
class Render:
    """One ray-cast frame: optical depth (inf: nothing hit), hit ids, normals, own-hit areas."""

    depth: np.ndarray  # [H, W] float64 optical z of the nearest hit, inf where none
    ids: np.ndarray  # [H, W] int32: solid index, or a BACKGROUND_* code
    normals: np.ndarray  # [H, W, 3] world normals of the hit surfaces
    silhouette_pixels: list[int]  # per solid: pixels it covers with every other solid removed


def ray_cast(camera: Camera, solids: list[Solid], wall_y: float | None = None) -> Render:
    """Nearest hits of every pixel's ray against the ground, an optional wall and the solids."""
    dirs = ray_directions(camera)
    origin = camera.position
    height, width = camera.height, camera.width
    depth = np.full((height, width), np.inf)
    ids = np.full((height, width), BACKGROUND_SKY, np.int32)
    normals = np.zeros((height, width, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dirs[..., 2] < 0, -origin[2] / dirs[..., 2], np.inf)
        t_wall = np.full_like(t_ground, np.inf)
        if wall_y is not None:
            t_wall = np.where(dirs[..., 1] > 0, (wall_y - origin[1]) / dirs[..., 1], np.inf)
    ground = t_ground < t_wall
    depth = np.where(ground, t_ground, t_wall)
    ids[np.isfinite(depth) & ground] = BACKGROUND_GROUND
    ids[np.isfinite(depth) & ~ground] = BACKGROUND_WALL
    normals[ground] = (0.0, 0.0, 1.0)
    normals[~ground] = (0.0, -1.0, 0.0)
    silhouettes = []
    for index, solid in enumerate(solids):
        window = _pixel_window(camera, solid)
        if window is None:
            silhouettes.append(0)
            continue
        rows, cols = window
        t, n = solid.intersect(origin, dirs[rows, cols].reshape(-1, 3))
        t = t.reshape(rows.stop - rows.start, cols.stop - cols.start)
        silhouettes.append(int(np.isfinite(t).sum()))
        nearer = t < depth[rows, cols]
        depth[rows, cols][nearer] = t[nearer]
        ids[rows, cols][nearer] = index
        normals[rows, cols][nearer] = n.reshape(t.shape + (3,))[nearer]
    return Render(depth, ids, normals, silhouettes)


def _pixel_window(camera: Camera, solid: Solid) -> tuple[slice, slice] | None:
    """Rows and columns that can see the solid (its projected bounding box, 1 px padding)."""
    col, row, z = camera.project(solid.box_corners())
    if np.any(z <= 0):  # partly behind the camera: test every pixel
        return slice(0, camera.height), slice(0, camera.width)
    c0, c1 = max(0, int(np.floor(col.min())) - 1), min(camera.width, int(np.ceil(col.max())) + 1)
    r0, r1 = max(0, int(np.floor(row.min())) - 1), min(camera.height, int(np.ceil(row.max())) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


def shade(camera: Camera, render: Render, solid_rgb: list[tuple[int, int, int]], ground_rgb,
          wall_rgb, sky_rgb=(226, 234, 244), tile_m: float = 0.5) -> np.ndarray:
    """RGB image: Lambert-shaded solids (faces differ a little), a light tiled ground, a wall."""
    height, width = render.ids.shape
    rgb = np.empty((height, width, 3), np.float64)
    rgb[:] = sky_rgb
    lambert = 0.62 + 0.38 * np.clip(render.normals @ LIGHT, 0.0, 1.0)
    for index, colour in enumerate(solid_rgb):
        where = render.ids == index
        rgb[where] = np.asarray(colour, float) * lambert[where][:, None]
    rgb[render.ids == BACKGROUND_WALL] = wall_rgb
    # A faint checker on the floor, so it has texture but stays light (every channel >= 190,
    # like ShapesWorld backgrounds, far from any solid colour).
    ground = render.ids == BACKGROUND_GROUND
    hits = camera.position + ray_directions(camera)[ground] * render.depth[ground][:, None]
    parity = (np.floor(hits[:, 0] / tile_m) + np.floor(hits[:, 1] / tile_m)) % 2
    rgb[ground] = np.asarray(ground_rgb, float) + np.where(parity == 0, 6.0, -6.0)[:, None]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)
