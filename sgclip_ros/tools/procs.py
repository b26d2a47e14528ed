"""Start ROS processes of this package in an isolated DDS domain (demo and tests)."""

from __future__ import annotations

import os
import subprocess
import sys


def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with its own ROS domain, discovery kept on this host.

    LD_LIBRARY_PATH and the ROS-wheel bootstrap guard are inherited together, as they must be.
    """
    if not 0 <= domain_id <= 101:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..101, got {domain_id}")
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
    )
    if env.get("ROS_DISTRO") == "humble":  # Humble's spelling; Jazzy on warns it is deprecated
        env["ROS_LOCALHOST_ONLY"] = "1"
    env.update(extra or {})
    return env


def start_module(module: str, args: list[str], env: dict[str, str], **popen) -> subprocess.Popen:
    """`python -m module args...` with this interpreter."""
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, **popen)


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGINT, then SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
