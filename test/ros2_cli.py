"""The real `ros2` command line in tests: `ros2 launch`, `ros2 run`, `ros2 topic/param/...`.

A robot's `ros2` is used when it is on PATH; here `make build` builds it from the upstream
sources in ../shared/ros2-tools (scripts/ros2_tools.sh) and `make test` puts it on PATH.
Commands run in the test's own ROS domain, and launch is stopped as a user stops it: SIGINT to
its whole process group, as Ctrl-C in a terminal does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sgclip_ros.tools.procs import ros_env

MISSING = (
    "needs the `ros2` command: a ROS 2 install on PATH (a robot), or the tools that `make build` "
    "builds from ../shared/ros2-tools (scripts/ros2_tools.sh); neither was found"
)


def require_ros2() -> str:
    """The `ros2` executable; skip without one, except in CI (CI=true), where that fails."""
    exe = shutil.which("ros2")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(MISSING)
    pytest.skip(MISSING)


def ros2(args: list[str], domain: int, timeout: float = 60.0, **env) -> subprocess.CompletedProcess:
    """`ros2 ARGS...` to completion in ``domain`` (output in `.stdout`, logs in `.stderr`)."""
    return subprocess.run(
        ["ros2", *args],
        env=ros_env(domain, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def ros2_until(args: list[str], domain: int, ok, deadline_s: float = 60.0):
    """Run `ros2 ARGS` until ``ok(result)`` holds (discovery takes a moment); the last result."""
    end = time.monotonic() + deadline_s
    while True:
        result = ros2(args, domain, timeout=max(10.0, deadline_s))
        if ok(result) or time.monotonic() > end:
            return result
        time.sleep(0.5)


class Ros2Process:
    """A long-running `ros2 launch ...` / `ros2 run ...` in its own process group."""

    def __init__(self, args: list[str], domain: int, log: Path, **env):
        self.args, self.log_path = args, log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            ["ros2", *args],
            env=ros_env(domain, env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the process group, then wait; SIGKILL (and fail) if it hangs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                self._log.close()
                raise AssertionError(
                    f"`ros2 {' '.join(self.args)}` ignored SIGINT for {timeout} s:\n{self.log()}"
                ) from None
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """Teardown of a test that failed early: leave no process behind."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if not self._log.closed:
            self._log.close()


def assert_clean_launch_exit(code: int, log: str, nodes: int) -> None:
    """`ros2 launch` stopped by SIGINT: exit 0, and every node process finished cleanly."""
    assert code == 0, f"ros2 launch exited with {code}:\n{log[-4000:]}"
    assert log.count("process has finished cleanly") == nodes, log[-4000:]
    for bad in ("process has died", "Traceback", "[ERROR]"):
        assert bad not in log, f"{bad!r} in the launch log:\n{log[-4000:]}"


def wait_for_node(domain: int, node: str, deadline_s: float = 60.0) -> None:
    """Start the ros2 daemon and wait until it lists ``node``, as a user would see it.

    CLI commands ask the daemon, which a first command starts; until it has discovered the
    graph they answer "Node not found"."""
    ros2(["daemon", "start"], domain)
    listed = ros2_until(["node", "list"], domain, lambda r: node in r.stdout.split(), deadline_s)
    assert node in listed.stdout.split(), f"{node} never appeared in `ros2 node list`"


def stop_daemon(domain: int) -> None:
    """The ros2 daemon that CLI commands start lives on; stop it with the test."""
    ros2(["daemon", "stop"], domain, timeout=30)


def feed_until(client, publisher, done, timeout: float, compressed: bool = False, t0: int = 0):
    """Publish moving-squares frames at about 10 Hz, stamped now, until ``done()``; its value."""
    import cv2
    from ros_harness import shapes_image
    from sensor_msgs.msg import CompressedImage

    from sgclip_ros.ros.image_conversion import rgb_to_image_msg

    end, t = time.monotonic() + timeout, t0
    while time.monotonic() < end and not done():
        rgb = shapes_image(t)
        if compressed:
            msg = CompressedImage(format="jpeg")
            msg.data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        else:
            msg = rgb_to_image_msg(rgb)
        msg.header.stamp = client.node.get_clock().now().to_msg()
        msg.header.frame_id = "camera_optical_frame"
        publisher.publish(msg)
        client.spin_for(0.1)
        t += 1
    return done()
