"""The demo's top-down plot: objects where their positions say, relations as lines."""

from __future__ import annotations

import numpy as np

from sgclip_ros.core.topdown import draw_topdown, label_rgb, side_by_side
from sgclip_ros.tools.sample_graph import sample_scene_graph


def test_objects_are_drawn_at_their_positions_in_their_label_colour():
    graph = sample_scene_graph(positions=True)
    image = draw_topdown(graph, size=400, range_m=2.0)
    scale = (400 - 40) / 2.0
    for obj in graph.objects:
        x, _, z = obj.position
        col, row = int(200 + x * scale), int(400 - 20 - z * scale)
        assert tuple(image[row, col]) == label_rgb(obj.label), obj.id
    # The circle and square sit on the same depth: the metric relation's line joins them.
    a, b = (int(200 + o.position[0] * scale) for o in graph.objects)
    row = int(400 - 20 - 1.5 * scale)
    between = image[row, min(a, b) + 10 : max(a, b) - 10]
    assert (between != 250).any(axis=1).all()  # no background pixel along the line


def test_a_graph_without_positions_gives_an_empty_plot_and_images_combine():
    empty = draw_topdown(sample_scene_graph(), size=200)
    colours = {label_rgb(o.label) for o in sample_scene_graph().objects}
    pixels = {tuple(p) for p in empty.reshape(-1, 3)}
    assert not colours & pixels
    both = side_by_side(np.zeros((10, 5, 3), np.uint8), empty)
    assert both.shape == (200, 205, 3) and (both[10:, :5] == 255).all()
