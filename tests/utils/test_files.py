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


def test_files_are_as_readable_as_the_umask_allows(tmp_path):
    """safetensors writes 0600 files; a published folder gives them what a plain open() would (0666
    minus the umask), so teammates on a shared machine can read a checkpoint or adapter."""
    import os

    import torch
    from safetensors.torch import save_file

    from soraplan.utils.files import current_umask

    old = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        with atomic_directory(tmp_path / "out") as staging:
            save_file({"w": torch.zeros(2)}, str(staging / "model.safetensors"))
            (staging / "run.sh").write_text("#!/bin/sh\n")
            os.chmod(staging / "run.sh", 0o700)
        assert (tmp_path / "out" / "model.safetensors").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "out" / "run.sh").stat().st_mode & 0o777 == 0o755
        os.umask(0o077)
        with atomic_directory(tmp_path / "private") as staging:
            save_file({"w": torch.zeros(2)}, str(staging / "model.safetensors"))
        assert (tmp_path / "private" / "model.safetensors").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
