"""Output folders: a tool replaces only folders carrying its marker (or empty ones)."""

from __future__ import annotations

import os

import pytest

from sgclip_ros.tools.out_dir import (
    OutDirError,
    check_replaceable,
    prepare_out_dir,
    replace_out_dir,
)

MARK = ".sgclip_test_tool"


def _user_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    return path


def test_a_users_folder_is_refused_and_left_untouched(tmp_path):
    mine = _user_folder(tmp_path / "models" / "sgclip")
    with pytest.raises(OutDirError, match=f"{mine}: not empty and not made by this tool"):
        prepare_out_dir(mine, MARK)
    new = tmp_path / "new"
    new.mkdir()
    (new / "result").write_text("r")
    with pytest.raises(OutDirError, match=str(mine)):
        replace_out_dir(new, mine, MARK)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert [p.name for p in new.iterdir()] == ["result"]  # not marked, not moved


def test_another_tools_marker_is_not_enough(tmp_path):
    other = prepare_out_dir(tmp_path / "out", ".sgclip_other_tool")
    with pytest.raises(OutDirError):
        prepare_out_dir(other, MARK)
    assert (other / ".sgclip_other_tool").is_file()


def test_a_folder_the_tool_made_is_replaced(tmp_path):
    out = prepare_out_dir(tmp_path / "a" / "out", MARK)
    assert [p.name for p in out.iterdir()] == [MARK] and (out / MARK).stat().st_size > 0
    (out / "old_result").write_text("stale")
    (out / "sub").mkdir()
    prepare_out_dir(out, MARK)
    assert [p.name for p in out.iterdir()] == [MARK]
    (out / "old_result").write_text("stale")
    new = tmp_path / "new"
    new.mkdir()
    (new / "result").write_text("fresh")
    assert replace_out_dir(new, out, MARK) == out and not new.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([MARK, "result"])


def test_absent_and_empty_folders_are_fine(tmp_path):
    check_replaceable(tmp_path / "absent", MARK)
    (tmp_path / "empty").mkdir()
    assert [p.name for p in prepare_out_dir(tmp_path / "empty", MARK).iterdir()] == [MARK]


def test_files_and_links_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutDirError, match="not a folder"):
        prepare_out_dir(tmp_path / "file", MARK)
    target = prepare_out_dir(tmp_path / "target", MARK)  # even a marked folder behind a link
    os.symlink(target, tmp_path / "link")
    with pytest.raises(OutDirError, match="is a link"):
        prepare_out_dir(tmp_path / "link", MARK)
    assert (tmp_path / "file").read_text() == "x" and (target / MARK).is_file()
