"""Training checkpoints as folders ``<output_dir>/checkpoint-<step>``.

A checkpoint folder only ever appears complete (it is written under a temporary name and renamed), so
"the newest folder named checkpoint-N" is always safe to resume from.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like checkpoint-1000)")
    return int(match.group(1))


def resolve_resume(output_dir: str | Path, value: str | None) -> Path | None:
    """``--resume_from_checkpoint`` value -> folder: None, ``latest`` (None if there is none yet) or a path."""
    if not value:
        return None
    if value == "latest":
        existing = list_checkpoints(output_dir)
        return existing[-1] if existing else None
    path = Path(value)
    if not path.is_dir():
        path = Path(output_dir) / value
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {value} not found (pass 'latest' or a checkpoint-N folder)")
    checkpoint_step(path)
    return path


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete the oldest checkpoints so that at most ``keep`` remain; returns what was deleted."""
    if not keep or keep < 1:
        return []
    existing = list_checkpoints(output_dir)
    doomed = existing[: max(0, len(existing) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def save_checkpoint(accelerator, output_dir: str | Path, step: int, write_extra, keep: int | None = None,
                    gather=None, **save_state_kwargs) -> Path:
    """Write ``<output_dir>/checkpoint-<step>``: the accelerate state (every rank takes part) plus what
    ``write_extra(folder)`` adds on the main rank (``save_pretrained`` folders, configs).
    ``save_state_kwargs`` go to ``accelerator.save_state`` (DeepSpeed's ``exclude_frozen_parameters``).
    ``gather()``, when given, is a context every rank enters around ``write_extra`` (ZeRO-3 gathers the
    weights there).

    Everything goes into ``.checkpoint-<step>.partial`` first and is renamed when complete, so a crash
    mid-save never leaves a folder that looks like a checkpoint. Then the oldest beyond ``keep`` go.
    """
    import os

    from ..utils.files import open_to_umask

    output_dir = Path(output_dir)
    target = output_dir / f"checkpoint-{step}"
    staging = output_dir / f".checkpoint-{step}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / "accelerate_state"), **save_state_kwargs)  # collective
    # each rank writes its own files last (random states; a ZeRO shard), after the last collective of
    # save_state: all must be written before the folder is renamed
    accelerator.wait_for_everyone()
    with gather() if gather is not None else contextlib.nullcontext():
        if accelerator.is_main_process:
            write_extra(staging)
    if accelerator.is_main_process:
        open_to_umask(staging)  # safetensors writes 0600 files
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        prune_checkpoints(output_dir, keep)
    accelerator.wait_for_everyone()
    return target
