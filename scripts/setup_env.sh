#!/usr/bin/env bash
# Create the pinned virtual environment at .venv once; later runs return at once.
# Re-creates it only when the requirement files or this script change.
set -euo pipefail
cd "$(dirname "$0")/.."
# CMake refuses exported include paths inside the source tree, and this package's source tree
# is the repository root, so the venv lives in a cache folder and .venv is a link to it.
VENV=.venv
VENV_HOME=${SGCLIP_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sgclip_ros}
PYTHON=${PYTHON:-python3}
stamp_of() { cat requirements/runtime.txt requirements/constraints.txt scripts/setup_env.sh \
  scripts/fix_wheel_cmake_paths.py | sha256sum | cut -d' ' -f1; }
want=$(stamp_of)
real="$VENV_HOME/venv-${want:0:16}"
if [ -f "$real/.sgclip_stamp" ] && [ "$(cat "$real/.sgclip_stamp")" = "$want" ]; then
  [ "$(readlink "$VENV" 2>/dev/null)" = "$real" ] || { rm -rf "$VENV"; ln -s "$real" "$VENV"; }
  exit 0
fi
echo "setup_env: creating $VENV (pinned ROS 2 Kilted wheels, torch, open_clip; a few minutes, once)"
start=$(date +%s)
rm -rf "$VENV" "$real"
mkdir -p "$VENV_HOME"
"$PYTHON" -m venv "$real"
ln -s "$real" "$VENV"
# The ROS wheels re-exec every venv Python with LD_LIBRARY_PATH set; keep pip outside that dance.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r requirements/runtime.txt -c requirements/constraints.txt 2> >(grep -v "is ignored: it is neither" >&2)
"$VENV/bin/python" scripts/fix_wheel_cmake_paths.py "$real"
echo "$want" > "$real/.sgclip_stamp"
echo "setup_env: done in $(( $(date +%s) - start )) s, $(du -sh "$real" | cut -f1) at $real"
