#!/usr/bin/env bash
# Run a command with the venv, the ros2 tools (when built) and this package's install space
# sourced: scripts/ros_env.sh CMD...   (SGCLIP_DISTRO=jazzy for the Jazzy build)
set -eo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/distro.sh
. scripts/distro.sh
venv="$PWD/$VENV"
export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export SGCLIP_DISTRO SGCLIP_INSTALL_BASE="$PWD/$INSTALL_BASE"
if [ -f "$ROS2_TOOLS/install/setup.sh" ]; then
  # shellcheck disable=SC1090,SC1091
  . "$ROS2_TOOLS/install/setup.sh"
fi
# shellcheck disable=SC1090,SC1091
. "$INSTALL_BASE/setup.sh"
exec "$@"
