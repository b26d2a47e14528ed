"""Point the ROS wheels' exported CMake files at this machine's Python and numpy headers.

The PyPI ROS wheels were built under /opt/python/cp311-cp311 and bake that interpreter's
include directory and numpy's include directory into share/**/*.cmake. Message generation
for our own package reads those files, so both paths are rewritten once after install.
"""

import os
import pathlib
import re
import sys
import sysconfig

import numpy

_PY_INCLUDE = re.compile(r"/opt/python/cp\d+-cp\d+/include/python\d+\.\d+")
_NP_INCLUDE = re.compile(
    r"/opt/python/cp\d+-cp\d+/lib/python\d+\.\d+/site-packages/numpy/(?:_core|core)/include"
)


def rewrite(prefix: pathlib.Path) -> int:
    """Rewrite every baked-in path under prefix/share; return the number of files changed."""
    py_include = sysconfig.get_paths()["include"]
    # Real paths: the venv is reached through the .venv link inside the source tree.
    np_include = os.path.realpath(numpy.get_include())
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(encoding="utf-8")
        new = _NP_INCLUDE.sub(np_include, _PY_INCLUDE.sub(py_include, text))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
    return changed


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    print(f"fix_wheel_cmake_paths: rewrote {rewrite(root)} CMake files under {root}/share")
