"""Writing outputs so that an interrupted run never leaves something that looks complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def current_umask() -> int:
    """The process's umask (Linux reads it without changing it; elsewhere it is set and put back)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_to_umask(folder: str | Path) -> None:
    """Give every file under ``folder`` the permissions a plain ``open()`` would have (0666 minus the
    umask; 0777 minus it for an executable). Why: safetensors (and tempfile-based writers) create
    files as 0600, so a checkpoint or adapter written on a shared machine would be unreadable to the
    teammates the umask lets read it."""
    umask = current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode & 0o777
            wanted = (0o777 if mode & 0o111 else 0o666) & ~umask  # an executable stays one
            if mode != wanted:
                os.chmod(path, wanted)


@contextlib.contextmanager
def atomic_directory(target: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename, its files
    readable as the umask allows (``open_to_umask``).

    On an exception the temporary folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir()  # honours the umask, unlike mkdtemp's 0700
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    open_to_umask(staging)
    if target.exists():
        retired = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, target)
