"""Annotated frames and contact sheets: what is drawn where, stable colours, input untouched."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from sgclip_ros.core.annotate import boxes_in_frame, contact_sheet, draw_scene_graph, track_color
from sgclip_ros.core.scene_graph import Box, ObjectNode, Observation, RelationFact, SceneGraph

H, W = 240, 320
GREY = 128


def _graph(relations: bool = True) -> SceneGraph:
    """Object 1 moves from the left box (frame 0) to the right box (frame 1); object 2 is in
    frame 1 only. Boxes are far from the top-left corner, where the relation panel goes."""
    one = ObjectNode(
        "1",
        "circle",
        0.9,
        observations=[
            Observation(0, Box(60.0, 150.0, 110.0, 200.0)),
            Observation(1, Box(200.0, 150.0, 250.0, 200.0)),
        ],
    )
    two = ObjectNode(
        "2", "square", 0.8, observations=[Observation(1, Box(200.0, 60.0, 260.0, 110.0))]
    )
    rels = [RelationFact("1", "below", "2", 0.7, 1, 1, [1], [0.7])] if relations else []
    return SceneGraph(1, "cam", "/cam", "cid", [0, 1], [one, two], [], rels)


def _image() -> np.ndarray:
    return np.full((H, W, 3), GREY, np.uint8)


def _left_edge(box: Box) -> np.ndarray:
    """Pixels along the middle third of the box's left edge."""
    x = int(box.x1)
    y1, y2 = int(box.y1), int(box.y2)
    third = (y2 - y1) // 3
    return np.asarray([(x, y) for y in range(y1 + third, y2 - third)])


def _color_at(img: np.ndarray, points: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in img[y, x]) for x, y in points}


def test_input_is_not_modified_and_output_is_a_new_image():
    img = _image()
    before = img.copy()
    out = draw_scene_graph(img, _graph())
    np.testing.assert_array_equal(img, before)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, img)
    assert (out != img).any()


def test_boxes_come_from_the_requested_frame():
    graph = _graph(relations=False)
    frame0 = draw_scene_graph(_image(), graph, frame_index=0)
    left, right = graph.objects[0].observations[0].box, graph.objects[0].observations[1].box
    assert _color_at(frame0, _left_edge(left)) == {track_color("1")}
    assert _color_at(frame0, _left_edge(right)) == {(GREY, GREY, GREY)}
    square = graph.objects[1].observations[0].box
    assert _color_at(frame0, _left_edge(square)) == {(GREY, GREY, GREY)}  # not seen in frame 0

    newest = draw_scene_graph(_image(), graph)
    assert _color_at(newest, _left_edge(right)) == {track_color("1")}
    assert _color_at(newest, _left_edge(square)) == {track_color("2")}
    np.testing.assert_array_equal(newest, draw_scene_graph(_image(), graph, frame_index=1))


def test_tags_are_drawn_next_to_each_box():
    graph = _graph(relations=False)
    out = draw_scene_graph(_image(), graph)
    box = graph.objects[1].observations[0].box
    above = out[int(box.y1) - 12 : int(box.y1) - 2, int(box.x1) + 2 : int(box.x1) + 30]
    assert (above != GREY).any()


def test_relations_add_an_arrow_and_a_text_panel():
    graph = _graph()
    with_rel = draw_scene_graph(_image(), graph)
    without = draw_scene_graph(_image(), graph, max_relations=0)
    corner = (slice(0, 12), slice(0, 120))
    assert (without[corner] == GREY).all()
    assert (with_rel[corner] < GREY).any()  # translucent dark panel with text
    # The arrow runs from the subject's centre (225, 175) up to the object's (230, 85).
    midway = with_rel[114:128, 220:236]
    assert (midway != GREY).any()
    assert (without[114:128, 220:236] == GREY).all()


def test_relation_count_is_capped_by_max_relations():
    graph = _graph()
    graph.relations = [RelationFact("1", f"p{k}", "2", 0.1 * k, 1, 1, [1], [0.5]) for k in range(8)]
    one = draw_scene_graph(_image(), graph, max_relations=1)
    five = draw_scene_graph(_image(), graph, max_relations=5)
    rows_changed = [int((img[:, :150] != GREY).any(axis=(1, 2))[:100].sum()) for img in (one, five)]
    assert rows_changed[1] > rows_changed[0]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="outside the window of 2 frame"):
        draw_scene_graph(_image(), _graph(), frame_index=2)
    with pytest.raises(ValueError, match="HxWx3"):
        draw_scene_graph(np.zeros((H, W), np.uint8), _graph())
    with pytest.raises(ValueError, match="max_relations"):
        draw_scene_graph(_image(), _graph(), max_relations=-1)


def test_boxes_in_frame_lists_only_objects_seen_there():
    graph = _graph()
    assert set(boxes_in_frame(graph, 0)) == {"1"}
    assert set(boxes_in_frame(graph)) == {"1", "2"}


def test_boxes_outside_the_image_are_clipped_not_fatal():
    graph = _graph(relations=False)
    graph.objects[0].observations[1] = Observation(1, Box(-50.0, -40.0, 5000.0, 4000.0))
    out = draw_scene_graph(_image(), graph)
    assert out.shape == (H, W, 3)


def test_track_colours_are_stable_across_processes_and_distinct():
    ids = [str(k) for k in range(12)]
    here = [track_color(i) for i in ids]
    assert len(set(here)) == len(ids)
    code = (
        "from sgclip_ros.core.annotate import track_color;"
        f"print([track_color(str(k)) for k in range({len(ids)})])"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(here)


def test_contact_sheet_tiles_row_by_row():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) for _ in range(5)]
    images.append(rng.integers(0, 256, (80, 40, 3), dtype=np.uint8))  # taller aspect
    sheet = contact_sheet(images, columns=4, tile_width=40)
    tile_h = max(round(img.shape[0] * 40 / img.shape[1]) for img in images)
    assert sheet.shape == (2 * tile_h, 4 * 40, 3)
    expected = cv2.resize(images[5], (40, tile_h), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(sheet[tile_h : 2 * tile_h, 40:80], expected)
    first = cv2.resize(images[0], (40, 30), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(sheet[:30, :40], first)
    assert (sheet[tile_h:, 80:] == 32).all()  # empty cells are background


def test_contact_sheet_validates_its_inputs():
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([], 2, 10)
    with pytest.raises(ValueError, match="columns"):
        contact_sheet([_image()], 0, 10)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        contact_sheet([_image(), np.zeros((4, 4), np.uint8)], 2, 10)
