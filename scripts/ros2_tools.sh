#!/usr/bin/env bash
# The ros2 command-line and launch tools for the tests (`ros2 launch`, `ros2 topic echo`, ...).
# A robot has them from its ROS install. Here launch, launch_ros and ros2cli are not on PyPI, so
# they are built from the upstream sources in ../shared/ros2-tools into .ros2_tools/<distro>
# (ignored by git; ~30 s once, then skipped while the sources and venv are unchanged).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/distro.sh
. scripts/distro.sh
src=${SGCLIP_ROS2_TOOLS_SRC:-../shared/ros2-tools}
if [ ! -x "$src/build.sh" ]; then
  if command -v ros2 >/dev/null; then
    echo "ros2-tools: using $(command -v ros2)"
  else
    echo "ros2-tools: WARNING: no ros2 on PATH and no $src: the ros2 CLI tests will be skipped" >&2
  fi
  exit 0
fi
bash "$src/build.sh" "$VENV" "$ROS2_TOOLS" "$SGCLIP_DISTRO"
