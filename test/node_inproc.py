"""A perception node in the test process, on its own context and domain, spun on a thread.

For tests that must reach inside a real node (inject a fault into its predictor, watch its
worker) while it talks real DDS to a Client. Everything else goes through topics, services and
parameters exactly as on a robot.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from ros_harness import write_params


class InProcessNode:
    """PerceptionNode(params) configured and activated (unless autostart is false)."""

    def __init__(self, tmp_path: Path, domain: int, **overrides):
        from sgclip_ros.nodes.perception_node import PerceptionNode

        params = write_params(tmp_path / "inproc.yaml", **overrides)
        self.context = rclpy.Context()
        rclpy.init(
            context=self.context,
            domain_id=domain,
            args=["--ros-args", "--params-file", str(params)],
        )
        self.node = PerceptionNode(context=self.context)
        if self.node.get_parameter("autostart").value:
            self.node.trigger_configure()
            self.node.trigger_activate()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self.spin_error: BaseException | None = None
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except BaseException as exc:  # noqa: BLE001 - surfaced by close()
            self.spin_error = exc

    def wait_for(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())

    def close(self) -> None:
        self.node._stop_worker()
        self.executor.shutdown()
        self._thread.join(10)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        assert self.spin_error is None, f"the executor raised {self.spin_error!r}"
