"""Output folders a tool may replace: only those it made itself.

A tool writes its marker file into every output folder it creates. Later runs delete and
rewrite such a folder, or an empty one, but refuse anything else, so that a mistyped ``--out``
(say ``--out models/sgclip`` or ``--out ~``) can never wipe a user's files.
"""

from __future__ import annotations

import shutil
from pathlib import Path


class OutDirError(ValueError):
    """An output folder exists that this tool did not make; nothing was deleted."""


def check_replaceable(path: str | Path, marker: str) -> None:
    """Raise :class:`OutDirError` unless ``path`` is absent, empty, or carries ``marker``."""
    path = Path(path)
    if path.is_symlink():
        raise OutDirError(f"{path}: is a link; refusing to replace it (choose another folder)")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutDirError(f"{path}: exists and is not a folder; refusing to replace it")
    if (path / marker).is_file() or not any(path.iterdir()):
        return
    raise OutDirError(
        f"{path}: not empty and not made by this tool (it has no {marker} file); refusing to "
        "delete it. Choose another folder, or remove this one yourself"
    )


def mark(path: str | Path, marker: str) -> None:
    """Write ``marker`` into ``path``: the folder may be replaced by the next run."""
    # Not empty: model manifests refuse empty files, and the text says what the file is for.
    text = "Made by an sgclip_ros tool, which may delete and rewrite this folder.\n"
    (Path(path) / marker).write_text(text, encoding="utf-8")


def remove_replaceable(path: str | Path, marker: str) -> None:
    """Delete ``path`` (when present) after :func:`check_replaceable` allowed it."""
    check_replaceable(path, marker)
    if Path(path).exists():
        shutil.rmtree(path)


def prepare_out_dir(path: str | Path, marker: str) -> Path:
    """``path`` as a new empty folder carrying ``marker``; an old one is replaced only when
    this tool made it (or it is empty)."""
    path = Path(path)
    remove_replaceable(path, marker)
    path.mkdir(parents=True)
    mark(path, marker)
    return path


def replace_out_dir(new: str | Path, dest: str | Path, marker: str) -> Path:
    """Move the finished folder ``new`` to ``dest`` (marked), replacing ``dest`` only when this
    tool made it (or it is empty)."""
    new, dest = Path(new), Path(dest)
    check_replaceable(dest, marker)  # before marking: a refusal leaves ``new`` as it was
    mark(new, marker)
    remove_replaceable(dest, marker)
    new.rename(dest)
    return dest
