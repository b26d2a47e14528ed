"""A fully filled SceneGraph crosses real Fast DDS between two separate processes intact."""

from __future__ import annotations

import json
import subprocess

import pytest

from sgclip_ros.tools.procs import ros_env, start_module, stop

pytestmark = pytest.mark.usefixtures("needs_install")


def test_scene_graph_round_trip_between_processes(tmp_path, ros_domain):
    from sgclip_ros.tools.sample_graph import _PERIOD_NS, _START_NS, sample_scene_graph

    env = ros_env(ros_domain)
    out = tmp_path / "graphs.jsonl"
    publisher = start_module(
        "sgclip_ros.tools.sample_publisher", ["--topic", "rt_graph", "--duration", "60"], env
    )
    try:
        listener = start_module(
            "sgclip_ros.nodes.scene_graph_echo",
            ["--topic", "rt_graph", "--count", "3", "--timeout", "50", "--jsonl", str(out)],
            env,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout, _ = listener.communicate(timeout=60)
    finally:
        stop(publisher)
    assert listener.returncode == 0, stdout
    received = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(received) == 3
    for got in received:
        # The publisher's n-th graph ends at stamp START + (n + 3) * PERIOD (4-frame window).
        seq = (got["stamp_ns"] - _START_NS) // _PERIOD_NS - 3
        # Through JSON, as the echo wrote it (positions are tuples in memory, lists in JSON).
        assert got == json.loads(sample_scene_graph(seq=seq, positions=True).to_json())
    assert "left of" in stdout and "circle" in stdout
