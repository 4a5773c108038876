"""Outputs are written under a temporary name and renamed: an interrupted write leaves no partial folder."""

from __future__ import annotations

import pytest

from soraplan.utils.files import atomic_directory


def test_new_folder_appears_complete(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("1")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "new.txt").write_text("half")
            raise RuntimeError("crash mid-save")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_success_replaces_the_old_folder(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
