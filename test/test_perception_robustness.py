"""Bad input never stops the perception node: every malformed frame is counted by its reason,
a camera burst skips its backlog (the newest frame wins), and a clock jump clears the window."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import Client, PerceptionProcess, diag_values, shapes_image, write_params
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

pytestmark = pytest.mark.usefixtures("needs_install")

RAW, JPEG = "/camera/image_raw", "/camera/image_raw/compressed"
N_EACH = 50


def _time(ns: int):
    from sgclip_ros.ros.conversions import time_from_ns

    return time_from_ns(ns)


def raw(rgb: np.ndarray, stamp_ns: int, **fields) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
    msg.header.stamp, msg.header.frame_id = _time(stamp_ns), "cam"
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


def compressed(data: bytes, stamp_ns: int, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp, msg.header.frame_id = _time(stamp_ns), "cam"
    return msg


def malformed_matrix(now_ns: int, last_good_ns: int) -> list[tuple[str, str, object]]:
    """(kind, expected reason, message) for 15 kinds of bad input."""
    img = shapes_image(0)
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    big = np.zeros((400, 400, 3), np.uint8)
    bayer = Image(height=120, width=160, encoding="bayer_rggb8", step=160, data=bytes(160 * 120))
    bayer.header.stamp = _time(now_ns)
    return [
        ("float encoding", "unsupported_encoding", raw(img, now_ns, encoding="32FC1")),
        ("empty encoding", "unsupported_encoding", raw(img, now_ns, encoding="")),
        ("zero width", "bad_size", raw(img, now_ns, width=0)),
        ("zero height", "bad_size", raw(img, now_ns, height=0)),
        ("odd yuv422 width", "bad_size", raw(img, now_ns, encoding="yuv422", width=159, step=318)),
        ("step too small", "step_mismatch", raw(img, now_ns, step=100)),
        ("data too short", "step_mismatch", raw(img, now_ns, data=img.tobytes()[:-7])),
        ("over max_pixels", "too_large", raw(big, now_ns)),
        ("bayer without cv_bridge", "no_cv_bridge", bayer),
        ("stale stamp", "stale_stamp", raw(img, now_ns - 60 * 10**9)),
        ("future stamp", "future_stamp", raw(img, now_ns + 60 * 10**9)),
        ("out of order", "out_of_order", raw(img, last_good_ns - 10**6)),  # sent after a good one
        ("garbage jpeg", "corrupt_compressed", compressed(garbage, now_ns)),
        ("truncated jpeg", "corrupt_compressed", compressed(jpeg[: len(jpeg) // 2], now_ns)),
        ("bmp format", "unsupported_encoding", compressed(jpeg, now_ns, fmt="bmp")),
    ]


# Reasons no single malformed message causes: they need a clock, a detector, the worker, a bag
# or a shutdown, and have tests of their own.
NOT_FROM_ONE_MESSAGE = {"clock_jump", "busy", "no_detections", "inference_error", "bad_message",
                        "inactive"}


def test_the_matrix_covers_every_reason_a_message_can_cause():
    from sgclip_ros.core.input_checks import REJECT_REASONS

    covered = {reason for _, reason, _ in malformed_matrix(time.time_ns(), time.time_ns())}
    assert covered == set(REJECT_REASONS) - NOT_FROM_ONE_MESSAGE  # a new reason needs a row


@pytest.fixture
def robust_node(tmp_path, ros_domain, request):
    overrides = dict(
        reliability="reliable",
        qos_depth=100,
        max_pixels=100_000,
        diagnostics_period_s=0.2,
        # Room for a slow run: the out-of-order frames are sent seconds after the good frame
        # they are measured against, and must not turn stale first (stale ones are 60 s old).
        max_stamp_age_s=30.0,
        cameras=[RAW, JPEG],
        detections=[""],
    )
    overrides.update(getattr(request, "param", {}))
    proc = PerceptionProcess(
        write_params(tmp_path / "p.yaml", **overrides), ros_domain, tmp_path / "node.log"
    )
    client = Client(ros_domain)
    yield proc, client
    client.close()
    alive = proc.alive()
    log = proc.log()
    proc.close()
    assert alive, log


def _wait_graph_after(client, pub, graphs, after_ns: int, make, timeout=60.0, camera=RAW) -> int:
    """Publish good frames until a graph of ``camera`` stamped after ``after_ns`` arrives."""

    def newest():
        return max(
            (
                g.header.stamp.sec * 10**9 + g.header.stamp.nanosec
                for g in graphs
                if g.camera == camera
            ),
            default=0,
        )

    end = time.monotonic() + timeout
    while newest() <= after_ns and time.monotonic() < end:
        pub.publish(make(time.time_ns()))
        client.spin_until(lambda: newest() > after_ns, 0.15)
    assert newest() > after_ns, "no scene graph for a good frame after the bad ones"
    return newest()


def test_malformed_inputs_are_counted_and_the_next_good_frame_is_processed(robust_node):
    from sgclip_ros.msg import SceneGraph

    proc, client = robust_node
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    pub_raw, pub_jpeg = client.publisher(Image, RAW), client.publisher(CompressedImage, JPEG)
    assert client.spin_until(lambda: pub_jpeg.get_subscription_count() > 0, 20)
    _wait_graph_after(client, pub_raw, graphs, 0, lambda ns: raw(shapes_image(1), ns))
    last_good = time.time_ns()
    pub_raw.publish(raw(shapes_image(1), last_good))  # accepted: out-of-order is measured from it
    matrix = malformed_matrix(time.time_ns(), last_good)
    expected: dict[tuple[str, str], int] = {}
    sent = {RAW: int(diag_values(diags, RAW).get("frames_received", 0)), JPEG: 0}
    for kind, reason, msg in matrix:
        topic = JPEG if isinstance(msg, CompressedImage) else RAW
        pub = pub_jpeg if topic == JPEG else pub_raw
        for _ in range(N_EACH):  # fewer than the queue depths: reliable delivery loses none
            pub.publish(msg)
        sent[topic] += N_EACH
        expected[topic, reason] = expected.get((topic, reason), 0) + N_EACH
        assert client.spin_until(
            lambda t=topic: int(diag_values(diags, t).get("frames_received", 0)) >= sent[t], 20
        ), f"{kind}: the node did not receive all {N_EACH}"

    def counts_reached() -> bool:
        return all(
            int(diag_values(diags, topic).get(f"drops.{reason}", -1)) >= n
            for (topic, reason), n in expected.items()
        )

    assert client.spin_until(counts_reached, 30), repr(
        {t: diag_values(diags, t) for t in (RAW, JPEG)}
    )
    for (topic, reason), n in expected.items():
        assert int(diag_values(diags, topic)[f"drops.{reason}"]) == n, (topic, reason)
    warned = [s for m in diags for s in m.status if RAW in s.name and s.level == b"\x01"]
    assert warned and "dropped" in warned[-1].message  # WARN, naming the reasons
    # The node is still up and processes the next good frame, raw and compressed.
    ok_jpeg = cv2.imencode(".jpg", cv2.cvtColor(shapes_image(2), cv2.COLOR_RGB2BGR))[1].tobytes()
    _wait_graph_after(client, pub_raw, graphs, last_good, lambda ns: raw(shapes_image(2), ns))
    _wait_graph_after(client, pub_jpeg, graphs, 0, lambda ns: compressed(ok_jpeg, ns), camera=JPEG)
    assert proc.alive()
    assert "frame rejected" in proc.log()


def test_a_300_hz_burst_skips_the_backlog_and_processes_the_newest_frame(robust_node):
    from sgclip_ros.msg import SceneGraph

    proc, client = robust_node
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    pub = client.publisher(Image, RAW)
    _wait_graph_after(client, pub, graphs, 0, lambda ns: raw(shapes_image(0), ns))
    start, sent, last_ns = time.monotonic(), 0, 0
    while time.monotonic() - start < 1.0:
        last_ns = time.time_ns()
        pub.publish(raw(shapes_image(sent), last_ns))
        sent += 1
        target = start + sent / 300.0
        client.spin_until(lambda t=target: time.monotonic() >= t, 1.0, step=0.001)

    history: list[int] = []

    def settled() -> bool:
        # The node's own books must balance: every frame it received was either inferred or
        # counted as skipped, and nothing waits. (Frames the transport itself dropped under a
        # loaded machine never reach the node; they are not the node's to count.)
        cam, node = diag_values(diags, RAW), diag_values(diags, ": node")
        received = int(cam.get("frames_received", 0))
        done = int(cam.get("frames_processed", 0)) + int(cam.get("drops.busy", 0))
        history.append(received)
        stable = len(history) > 50 and history[-50] == received
        return stable and done == received and node.get("pending") == "0"

    assert client.spin_until(settled, 60), diag_values(diags, RAW)
    cam = diag_values(diags, RAW)
    assert sent >= 200
    assert int(cam["frames_received"]) >= 100
    assert int(cam["drops.busy"]) > 0  # the model could not keep up with 300 Hz: skipped, counted
    # Latest-frame policy: frames waiting were replaced by newer ones, so the burst's last frame
    # (which nothing replaced) was inferred, not dropped behind a queue of older ones.
    def newest_inferred() -> bool:
        return any(g.header.stamp.sec * 10**9 + g.header.stamp.nanosec == last_ns for g in graphs)

    assert client.spin_until(newest_inferred, 10), "no scene graph for the burst's last frame"
    assert sum(int(v) for k, v in cam.items() if k.startswith("drops.") and k != "drops.busy") == 0


@pytest.mark.parametrize(
    "robust_node", [{"use_sim_time": True, "max_stamp_age_s": 0.0}], indirect=True
)
def test_a_backwards_clock_jump_clears_the_window(robust_node):
    from sgclip_ros.msg import SceneGraph

    proc, client = robust_node
    graphs = client.subscribe(SceneGraph, "/scene_graph")
    diags = client.subscribe(DiagnosticArray, "/diagnostics")
    clock = client.publisher(Clock, "/clock")
    pub = client.publisher(Image, RAW)
    t = [1000 * 10**9]

    def frame(_ns):
        t[0] += 10**8
        clock.publish(Clock(clock=_time(t[0])))
        client.spin_for(0.01)
        return raw(shapes_image(t[0] // 10**8), t[0])

    deadline = time.monotonic() + 60
    while not (graphs and len(graphs[-1].frame_stamps) >= 3) and time.monotonic() < deadline:
        pub.publish(frame(0))
        client.spin_for(0.1)
    assert len(graphs[-1].frame_stamps) >= 3, repr(diag_values(diags, RAW))
    jumped = t[0]
    t[0] = 10 * 10**9  # a simulator reset: the clock goes back 990 s
    deadline = time.monotonic() + 30
    while not any(g.header.stamp.sec < 500 for g in graphs) and time.monotonic() < deadline:
        pub.publish(frame(0))
        client.spin_for(0.1)
    after = next(g for g in graphs if g.header.stamp.sec < 500)
    assert len(after.frame_stamps) == 1  # the window restarted: no frame from before the jump
    assert jumped // 10**9 >= 1000
    assert client.spin_until(lambda: diag_values(diags, RAW).get("drops.clock_jump") == "1", 10), (
        repr(diag_values(diags, RAW))
    )
