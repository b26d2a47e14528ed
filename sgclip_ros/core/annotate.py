"""Draw a SceneGraph onto an RGB frame, and tile frames into a contact sheet (ROS-free).

Colours are a pure function of the track id, so an object keeps its colour across windows,
runs and machines. The input image is never modified.
"""

from __future__ import annotations

import colorsys
import math
import zlib

import cv2
import numpy as np

from sgclip_ros.core.scene_graph import Box, SceneGraph

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PANEL_ALPHA = 0.6  # the relation panel darkens what is under it instead of hiding it


def _check_rgb(image: np.ndarray, what: str = "image") -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f"{what} must be a uint8 numpy array, got {getattr(image, 'dtype', type(image))}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} must be HxWx3 with H, W > 0, got shape {image.shape}")


def track_color(track_id: str) -> tuple[int, int, int]:
    """A bright RGB colour from a stable hash of the id (crc32, not Python's salted hash)."""
    h = zlib.crc32(str(track_id).encode("utf-8"))
    hue = (h % 360) / 360.0
    sat = 0.65 + ((h >> 9) % 30) / 100.0
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_color(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _frame_count(graph: SceneGraph) -> int:
    if graph.frame_stamps_ns:
        return len(graph.frame_stamps_ns)
    indices = [ob.frame_index for o in graph.objects for ob in o.observations]
    return max(indices) + 1 if indices else 1


def _resolve_frame(graph: SceneGraph, frame_index: int) -> int:
    n = _frame_count(graph)
    if not -n <= frame_index < n:
        raise ValueError(f"frame_index {frame_index} is outside the window of {n} frame(s)")
    return frame_index % n


def boxes_in_frame(graph: SceneGraph, frame_index: int = -1) -> dict[str, Box]:
    """track id -> box of every object observed in that frame of the window (default newest)."""
    fi = _resolve_frame(graph, frame_index)
    out = {}
    for obj in graph.objects:
        for ob in obj.observations:
            if ob.frame_index == fi:
                out[obj.id] = ob.box
    return out


def _scale(image: np.ndarray) -> tuple[float, int]:
    """Font scale and line thickness that stay readable from 160 px to 4K frames."""
    short = min(image.shape[:2])
    return max(0.35, short / 960.0), max(1, round(short / 400))


def _draw_box(out: np.ndarray, box: Box, color, tag: str, font: float, thick: int) -> None:
    height, width = out.shape[:2]
    x1 = int(np.clip(math.floor(box.x1), 0, width - 1))
    y1 = int(np.clip(math.floor(box.y1), 0, height - 1))
    x2 = int(np.clip(math.ceil(box.x2) - 1, x1, width - 1))
    y2 = int(np.clip(math.ceil(box.y2) - 1, y1, height - 1))
    cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
    (tw, th), base = cv2.getTextSize(tag, _FONT, font, 1)
    ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(height - 1, y2 + th + base + 2)
    cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty + 1), color, -1)
    cv2.putText(out, tag, (x1 + 1, ty - base + 1), _FONT, font, _text_color(color), 1, cv2.LINE_AA)


def _center(box: Box) -> tuple[int, int]:
    return int(round((box.x1 + box.x2) / 2)), int(round((box.y1 + box.y2) / 2))


def _top_relations(graph: SceneGraph, max_relations: int):
    return sorted(graph.relations, key=lambda r: -r.score)[:max_relations]


def _draw_arrows(out: np.ndarray, relations, boxes: dict[str, Box], thick: int) -> None:
    """Subject-centre -> object-centre arrows, for pairs seen in this frame."""
    for rel in relations:
        if rel.subject_id in boxes and rel.object_id in boxes:
            start, end = _center(boxes[rel.subject_id]), _center(boxes[rel.object_id])
            if start != end:
                color = track_color(rel.subject_id)
                cv2.arrowedLine(out, start, end, color, thick, cv2.LINE_AA, tipLength=0.08)


def _relation_lines(graph: SceneGraph, relations) -> list[str]:
    names = {o.id: o.label or "?" for o in graph.objects}
    return [
        f"{names.get(r.subject_id, '?')}#{r.subject_id} {r.predicate} "
        f"{names.get(r.object_id, '?')}#{r.object_id} {r.score:.2f}"
        for r in relations
    ]


def _draw_panel(out: np.ndarray, lines: list[str], font: float) -> None:
    """Text lines on a translucent dark panel in the top-left corner."""
    if not lines:
        return
    sizes = [cv2.getTextSize(line, _FONT, font, 1) for line in lines]
    line_h = max(th + base for (_, th), base in sizes) + 4
    width = min(out.shape[1], max(tw for (tw, _), _ in sizes) + 8)
    height = min(out.shape[0], line_h * len(lines) + 4)
    region = out[:height, :width]
    region[:] = (region * (1 - _PANEL_ALPHA)).astype(np.uint8)
    for k, line in enumerate(lines):
        y = 2 + line_h * (k + 1) - sizes[k][1] - 2
        cv2.putText(out, line, (4, y), _FONT, font, (255, 255, 255), 1, cv2.LINE_AA)


def draw_scene_graph(
    rgb: np.ndarray, graph: SceneGraph, frame_index: int = -1, max_relations: int = 5
) -> np.ndarray:
    """A copy of ``rgb`` with the objects' boxes in that frame, their tags, and top relations.

    Tags read "id label score"; relations are arrows from subject to object plus text lines.
    """
    _check_rgb(rgb, "rgb")
    if max_relations < 0:
        raise ValueError(f"max_relations must be >= 0, got {max_relations}")
    out = np.array(rgb, copy=True, order="C")
    font, thick = _scale(out)
    boxes = boxes_in_frame(graph, frame_index)
    relations = _top_relations(graph, max_relations)
    _draw_arrows(out, relations, boxes, thick)  # first, so boxes and tags stay readable
    for obj in graph.objects:
        if obj.id in boxes:
            tag = f"{obj.id} {obj.label or '?'} {obj.score:.2f}"
            _draw_box(out, boxes[obj.id], track_color(obj.id), tag, font, thick)
    _draw_panel(out, _relation_lines(graph, relations), font)
    return out


def contact_sheet(
    images: list[np.ndarray], columns: int, tile_width: int, background: int = 32
) -> np.ndarray:
    """Tile RGB images row by row, each scaled to ``tile_width`` (aspect kept), top-left aligned.

    The sheet is ``columns * tile_width`` wide; rows are as tall as the tallest tile.
    """
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if columns < 1 or tile_width < 1:
        raise ValueError(f"columns and tile_width must be >= 1, got {columns}, {tile_width}")
    tiles = []
    for k, image in enumerate(images):
        _check_rgb(image, f"images[{k}]")
        h, w = image.shape[:2]
        th = max(1, round(h * tile_width / w))
        interp = cv2.INTER_AREA if tile_width < w else cv2.INTER_LINEAR
        tile = cv2.resize(np.ascontiguousarray(image), (tile_width, th), interpolation=interp)
        tiles.append(tile)
    tile_h = max(t.shape[0] for t in tiles)
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * tile_h, columns * tile_width, 3), background, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * tile_h : r * tile_h + tile.shape[0], c * tile_width : (c + 1) * tile_width] = tile
    return sheet
