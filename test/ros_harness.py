"""Test harness: a perception node in its own process, and an rclpy client in the test process.

Each test gets its own ROS domain and its own rclpy Context, so tests never see each other.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from sgclip_ros.ros.params import load_defaults
from sgclip_ros.tools.procs import ros_env, stop

REPO = Path(__file__).resolve().parent.parent


def write_params(path: Path, **overrides) -> Path:
    """A params file: the shipped defaults with ``overrides``."""
    params = load_defaults(REPO / "config" / "sgclip.yaml")
    params.update(overrides)
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


class PerceptionProcess:
    """`python -m sgclip_ros.nodes.perception_node` with a params file, in a given domain."""

    def __init__(self, params: Path, domain: int, log: Path):
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sgclip_ros.nodes.perception_node",
                "--ros-args",
                "--params-file",
                str(params),
            ],
            env=ros_env(domain),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def close(self) -> int:
        code = stop(self.proc, timeout=10)
        self._log.close()
        return code


class Client:
    """An rclpy node in the test process, on its own context and domain."""

    def __init__(self, domain: int, name: str = "test_client"):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}
        self._clients: dict = {}

    def subscribe(self, msg_type, topic: str, latched: bool = False) -> list:
        qos = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        inbox = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, inbox.append, qos)
        return inbox

    def publisher(self, msg_type, topic: str, reliable: bool = True, depth: int = 100):
        qos = QoSProfile(
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        return self.node.create_publisher(msg_type, topic, qos)

    def spin_until(self, predicate, timeout: float, step: float = 0.02) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=step)
        return bool(predicate())

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def call(self, srv_type, name: str, request, timeout: float = 30.0, attempts: int = 3):
        """Call and wait for the answer. A new client's response reader can still be unmatched
        when the server answers ("failed to send response (timeout)" in rmw_fastrtps), and
        that answer is lost: the request is sent again, as a robot's client would retry."""
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        client = self._clients[key]
        if not self.spin_until(client.service_is_ready, timeout):
            raise TimeoutError(f"service {name} not available")
        for _ in range(attempts):
            future = client.call_async(request)
            if self.spin_until(future.done, timeout / attempts):
                return future.result()
            client.remove_pending_request(future)
        raise TimeoutError(f"service {name} did not answer {attempts} requests")

    def run_goal(self, action_client, action_type, name: str, goal, timeout: float = 30.0,
                 attempts: int = 3):
        """Send an action goal and wait for its result: (goal id as bytes, result).

        The goal request's answer can be lost like a service's (see ``call``) while the goal
        still runs: its result is then asked for by goal id, and the goal is sent again only
        when the server never had it (status unknown), as a robot's client would."""
        from action_msgs.msg import GoalStatus
        from unique_identifier_msgs.msg import UUID

        service = action_type.Impl.GetResultService
        if not self.spin_until(action_client.server_is_ready, 30):
            raise TimeoutError(f"action {name} not available")
        for _ in range(attempts):
            goal_id = UUID(uuid=list(uuid.uuid4().bytes))
            sent = action_client.send_goal_async(goal, goal_uuid=goal_id)
            if self.spin_until(sent.done, 10):
                handle = sent.result()
                assert handle.accepted, f"goal to {name} rejected"
                result = handle.get_result_async()
                if not self.spin_until(result.done, timeout):
                    raise TimeoutError(f"no result from {name} in {timeout} s")
                return bytes(goal_id.uuid), result.result().result
            request = service.Request(goal_id=goal_id)
            answer = self.call(service, f"{name}/_action/get_result", request, timeout=timeout)
            if answer.status != GoalStatus.STATUS_UNKNOWN:
                return bytes(goal_id.uuid), answer.result
        raise TimeoutError(f"action {name} did not take {attempts} goals")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def shapes_image(t: int, width: int = 160, height: int = 120, n: int = 3) -> np.ndarray:
    """A frame of ``n`` solid squares sliding right and back, on a light background."""
    import cv2

    image = np.full((height, width, 3), 235, np.uint8)
    colours = [(220, 30, 30), (30, 60, 220), (30, 180, 30), (230, 200, 20)]
    for k in range(n):
        phase = t % 40  # back and forth, 1 px per frame: tracks never jump
        x, y = 8 + 45 * k + (phase if phase < 20 else 40 - phase), 20 + 25 * k
        cv2.rectangle(image, (x, y), (x + 24, y + 24), colours[k % 4], -1)
    return image


def diag_values(array_msgs: list, name_part: str) -> dict[str, str]:
    """KeyValues of the newest DiagnosticStatus whose name contains ``name_part``."""
    for msg in reversed(array_msgs):
        for status in msg.status:
            if name_part in status.name:
                return {kv.key: kv.value for kv in status.values} | {
                    "_level": status.level,
                    "_message": status.message,
                }
    return {}
