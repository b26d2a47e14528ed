#!/usr/bin/env bash
# Create the pinned virtual environment (.venv; Jazzy: .venv-jazzy) once; later runs return at once.
# Re-creates it only when the requirement files or this script change.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/distro.sh
. scripts/distro.sh
# CMake refuses exported include paths inside the source tree, and this package's source tree
# is the repository root, so the venv lives in a cache folder and .venv is a link to it.
VENV_HOME=${SGCLIP_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/sgclip_ros}
PYTHON=${PYTHON:-python3}
mkdir -p "$VENV_HOME"
# One creator at a time: a second `make` waits here, then finds the venv ready.
exec 9>"$VENV_HOME/.setup-$SGCLIP_DISTRO.lock"
flock 9
stamp_of() { cat "$REQUIREMENTS" "$CONSTRAINTS" scripts/setup_env.sh \
  scripts/fix_wheel_cmake_paths.py | sha256sum | cut -d' ' -f1; }
want=$(stamp_of)
real="$VENV_HOME/venv-$SGCLIP_DISTRO-${want:0:16}"
if [ -f "$real/.sgclip_stamp" ] && [ "$(cat "$real/.sgclip_stamp")" = "$want" ]; then
  [ "$(readlink "$VENV" 2>/dev/null)" = "$real" ] || { rm -rf "$VENV"; ln -s "$real" "$VENV"; }
  exit 0
fi
echo "setup_env: creating $VENV (pinned ROS 2 $SGCLIP_DISTRO wheels, torch, open_clip; a few minutes, once)"
start=$(date +%s)
rm -rf "$real"
"$PYTHON" -m venv "$real"
# The ROS wheels re-exec every venv Python with LD_LIBRARY_PATH set; keep pip outside that dance.
"$real/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$REQUIREMENTS" -c "$CONSTRAINTS" 2> >(grep -v "is ignored: it is neither" >&2)
"$real/bin/python" scripts/fix_wheel_cmake_paths.py "$real"
echo "$want" > "$real/.sgclip_stamp"
# The link moves only once the new venv is complete: processes using the old one keep working.
ln -sfn "$real" "$VENV"
echo "setup_env: done in $(( $(date +%s) - start )) s, $(du -sh "$real" | cut -f1) at $real"
