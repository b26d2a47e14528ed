"""`make demo`: a real publisher process sends a SceneGraph and a real listener prints it.

This is the foundation-stage demo; the perception pipeline replaces the sample publisher.
"""

from __future__ import annotations

import argparse
import os
import sys

from sgclip_ros.tools.procs import ros_env, start_module, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("SGCLIP_DEMO_DOMAIN", "42"))
    )
    parser.add_argument("--count", type=int, default=1, help="graphs to print before exiting")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    env = ros_env(args.domain_id)
    publisher = start_module(
        "sgclip_ros.tools.sample_publisher", ["--duration", str(args.timeout)], env
    )
    try:
        listener = start_module(
            "sgclip_ros.nodes.scene_graph_echo",
            ["--count", str(args.count), "--timeout", str(args.timeout)],
            env,
        )
        code = listener.wait(args.timeout + 10)
    finally:
        stop(publisher)
    print(f"demo: listener exited with code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
