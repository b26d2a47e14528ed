"""PerceptionStatus -> DiagnosticArray: levels, messages and key values (pure, no node)."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from sgclip_ros.core.health import (
    CameraStatus,
    Level,
    PerceptionStatus,
    cameras_from_meters,
    drop_message,
    node_level,
)
from sgclip_ros.core.input_checks import REJECT_REASONS, DropCounter, RateMeter
from sgclip_ros.ros.diagnostics import diagnostics_msg

S = 1_000_000_000


def _status(**overrides) -> PerceptionStatus:
    cams = [
        CameraStatus("/cam_a/image_raw", 29.97, 300, 290, 280, frame_id="a_optical"),
        CameraStatus("/cam_b/image_raw", 15.0, 150, 150, 140),
    ]
    fields = dict(
        node_name="sgclip_perception",
        backend="torch",
        device="cuda:0",
        model_id="0123456789abcdef",
        concepts_id="c0ffee",
        cameras=cams,
        latency_p50_ms=12.345,
        latency_p99_ms=40.0,
        latency_mean_ms=15.5,
    )
    fields.update(overrides)
    return PerceptionStatus(**fields)


def _values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_healthy_node_is_ok_with_one_status_per_camera():
    status = _status()
    array = diagnostics_msg(status, 5 * S + 7)
    assert (array.header.stamp.sec, array.header.stamp.nanosec) == (5, 7)
    names = [s.name for s in array.status]
    assert names == [
        "sgclip_perception: node",
        "sgclip_perception: camera /cam_a/image_raw",
        "sgclip_perception: camera /cam_b/image_raw",
    ]
    assert all(s.level == DiagnosticStatus.OK for s in array.status)
    assert all(s.hardware_id == "cuda:0" for s in array.status)


def test_node_key_values_hold_every_figure():
    status = _status(fallback_reasons=["tensorrt: not importable"])
    status.cameras[0].drops = {"bad_size": 4, "busy": 10}
    values = _values(diagnostics_msg(status, Time(sec=1)).status[0])
    assert values["backend"] == "torch" and values["device"] == "cuda:0"
    assert values["model_id"] == status.model_id and values["concepts_id"] == "c0ffee"
    assert values["frames_processed"] == str(290 + 150)
    assert values["graphs_published"] == str(280 + 140)
    assert float(values["latency_p50_ms"]) == round(status.latency_p50_ms, 2)
    assert float(values["latency_p99_ms"]) == status.latency_p99_ms
    assert values["fallback_reasons"] == "tensorrt: not importable"
    assert values["drops_total"] == "14"
    assert values["drops.bad_size"] == "4" and values["drops.busy"] == "10"
    assert all(f"drops.{r}" in values for r in REJECT_REASONS)  # stable keys, zeros included


def test_camera_key_values():
    status = _status()
    status.cameras[0].drops = {"stale_stamp": 3}
    cam = _values(diagnostics_msg(status, 0).status[1])
    assert cam["topic"] == "/cam_a/image_raw" and cam["frame_id"] == "a_optical"
    assert float(cam["input_hz"]) == round(status.cameras[0].input_hz, 1)
    assert cam["frames_received"] == "300" and cam["frames_processed"] == "290"
    assert cam["graphs_published"] == "280"
    assert cam["drops.stale_stamp"] == "3" and cam["drops.bad_size"] == "0"


def test_missing_latency_reads_n_a():
    values = _values(diagnostics_msg(PerceptionStatus("n", "torch", "cpu", "m"), 0).status[0])
    assert values["latency_p50_ms"] == "n/a" and values["latency_p99_ms"] == "n/a"


def test_no_backend_or_model_or_an_error_is_error():
    for overrides, words in (
        (dict(backend=""), "no inference backend"),
        (dict(model_id=""), "no model loaded"),
        (dict(error="CUDA out of memory"), "CUDA out of memory"),
    ):
        node = diagnostics_msg(_status(**overrides), 0).status[0]
        assert node.level == DiagnosticStatus.ERROR, overrides
        assert words in node.message


def test_drops_in_the_period_warn_and_name_the_reason():
    status = _status()
    status.cameras[1].period_drops = {"bad_size": 50}
    status.cameras[1].drops = {"bad_size": 50}
    node, cam_a, cam_b = diagnostics_msg(status, 0).status
    assert node.level == DiagnosticStatus.WARN and "dropped 50 frames: bad_size x50" in node.message
    assert (
        cam_b.level == DiagnosticStatus.WARN and cam_b.message == "dropped 50 frames: bad_size x50"
    )
    assert cam_a.level == DiagnosticStatus.OK
    assert _values(cam_b)["drops_last_period"] == "50"


def test_old_drops_alone_do_not_warn():
    status = _status()
    status.cameras[0].drops = {"corrupt_compressed": 7}  # happened, but not in this period
    assert all(s.level == DiagnosticStatus.OK for s in diagnostics_msg(status, 0).status)


def test_busy_drops_are_reported_but_expected():
    status = _status()
    status.cameras[0].period_drops = {"busy": 20}
    status.cameras[0].drops = {"busy": 20}
    node, cam_a, _ = diagnostics_msg(status, 0).status
    assert node.level == DiagnosticStatus.OK and cam_a.level == DiagnosticStatus.OK
    assert _values(cam_a)["drops.busy"] == "20"


def test_untrained_model_warns():
    node = diagnostics_msg(_status(untrained=True), 0).status[0]
    assert node.level == DiagnosticStatus.WARN and "untrained" in node.message


def test_error_outranks_warnings():
    status = _status(backend="", untrained=True)
    status.cameras[0].period_drops = {"bad_size": 1}
    level, message = node_level(status)
    assert level is Level.ERROR and "no inference backend" in message


def test_drop_message_orders_by_count_and_summarises_the_tail():
    drops = {"bad_size": 5, "stale_stamp": 20, "too_large": 1, "out_of_order": 5, "busy": 0}
    message = drop_message(drops, top=3)
    assert message == (
        "dropped 31 frames: stale_stamp x20, bad_size x5, out_of_order x5 (+1 more reasons)"
    )
    assert drop_message({}) == "" and drop_message({"bad_size": 1}).startswith("dropped 1 frame:")


def test_node_warning_sums_drops_over_cameras():
    status = _status()
    status.cameras[0].period_drops = {"bad_size": 2, "future_stamp": 1}
    status.cameras[1].period_drops = {"bad_size": 3}
    level, message = node_level(status)
    assert level is Level.WARN and "dropped 6 frames: bad_size x5, future_stamp x1" in message


def test_cameras_from_meters_folds_counters_into_statuses():
    drops, rates = DropCounter(), RateMeter(window_s=1.0)
    drops.add("/a", "bad_size", 2)
    drops.add("/b", "step_mismatch")
    drops.period()  # end of one reporting period
    drops.add("/a", "stale_stamp")
    for k in range(11):
        rates.tick("/a", k * S // 10)
    cams = cameras_from_meters(
        ["/a", "/b"], drops.snapshot(), drops.period(), rates.rates(S), processed={"/a": 9}
    )
    a, b = cams
    assert a.drops == {"bad_size": 2, "stale_stamp": 1} and a.period_drops == {"stale_stamp": 1}
    assert b.drops == {"step_mismatch": 1} and b.period_drops == {}
    assert abs(a.input_hz - 10.0) < 1e-9 and b.input_hz == 0.0
    assert a.frames_processed == 9 and b.frames_processed == 0


def test_a_worker_is_stalled_after_ten_expected_periods_and_at_least_two_seconds():
    from sgclip_ros.core.health import stalled_for

    assert stalled_for(1.9, input_hz=30, stride=1, model_s=0.01) == 0.0  # floor of 2 s
    assert stalled_for(2.5, input_hz=30, stride=1, model_s=0.01) == 2.5
    assert stalled_for(2.5, input_hz=30, stride=1, model_s=0.5) == 0.0  # 10 x a 0.5 s model
    assert stalled_for(5.1, input_hz=30, stride=1, model_s=0.5) == 5.1
    assert stalled_for(9.0, input_hz=1, stride=1, model_s=float("nan")) == 0.0  # 10 x 1 Hz
    assert stalled_for(60.0, input_hz=0.0, stride=1, model_s=0.01) == 0.0  # no frames: idle


def test_a_dead_or_stalled_worker_is_error():
    status = _status()
    status.worker_state = "dead: MemoryError: out of memory"
    assert node_level(status) == (Level.ERROR, "inference thread dead: MemoryError: out of memory")
    status.worker_state, status.stalled_s = "running", 3.25
    assert node_level(status) == (Level.ERROR, "no scene graph for 3.2 s while frames arrive")
