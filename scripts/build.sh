#!/usr/bin/env bash
# Build this package with colcon against the .venv underlay (build/, install/, log/ at the root).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(readlink -f .venv)"
export PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
# colcon's own Python must not re-exec through the ROS-wheel bootstrap with a stale environment.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
colcon --log-base log build --base-paths . --build-base build --install-base install \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release
