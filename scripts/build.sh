#!/usr/bin/env bash
# Build this package with colcon against the distribution's venv underlay, then the ros2 tools.
# Kilted: build/, install/, log/ at the root; Jazzy: build-jazzy/, install-jazzy/, log-jazzy/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/distro.sh
. scripts/distro.sh
venv="$(readlink -f "$VENV")"
export PATH="$venv/bin:$PATH" CMAKE_PREFIX_PATH="$venv" AMENT_PREFIX_PATH="$venv"
# colcon's own Python must not re-exec through the ROS-wheel bootstrap with a stale environment.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
colcon --log-base "$LOG_BASE" build --base-paths . --build-base "$BUILD_BASE" \
  --install-base "$INSTALL_BASE" \
  --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
bash scripts/ros2_tools.sh
