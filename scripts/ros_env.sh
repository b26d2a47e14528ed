#!/usr/bin/env bash
# Run a command with the venv and this package's install space sourced: scripts/ros_env.sh CMD...
set -eo pipefail
cd "$(dirname "$0")/.."
VENV="$PWD/.venv"
export PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
. install/setup.sh
exec "$@"
