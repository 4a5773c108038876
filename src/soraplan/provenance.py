"""How a generated video was made, written beside it, and read back to make it again.

Every output of ``soraplan sample`` (mp4, png, grid) gets a JSON sidecar ``<name>.json`` and the same JSON
inside the file itself (the mp4's ``comment`` tag, a PNG text chunk), so the record survives the file being
moved or shared alone. A record holds what a person comparing two videos asks about (prompt, refined
prompt, conditioning files with their content hashes, mask type, seed, sampler, resolution, the models by
path or Hub id + commit + a hash of their configs, soraplan and torch versions, the command line) and,
under ``arguments``, every ``soraplan sample`` option, so ``soraplan sample --from_json`` can rebuild the
run. ``frames_sha256`` hashes the decoded-to-be frames (before H.264), which is what "the same video"
means: x264's byte stream is not reproducible, the frames are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

FORMAT = "soraplan-sample/1"
PNG_KEY = "soraplan"  # PNG text chunk holding the record


class ProvenanceError(ValueError):
    """A record that cannot be used (not ours, damaged, or its inputs changed); one line for the user."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frames_sha256(frames: np.ndarray) -> str:
    """Hash of (T, H, W, 3) uint8 frames, shape included (a reshaped clip is another video)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    digest = hashlib.sha256(repr(frames.shape).encode())
    digest.update(frames.tobytes())
    return digest.hexdigest()


def config_sha256(folder: str | os.PathLike) -> str:
    """One hash over a model folder's JSON files (its own and its components'), not its weights.

    Cheap for a 10 GB model, and it changes whenever the architecture, scheduler, latent statistics or
    tokenizer settings do; for a Hub model the commit pins the weights as well.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for pattern in ("*.json", "*/*.json") for p in folder.glob(pattern) if p.is_file())
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def model_record(source) -> dict | None:
    """Identity of a resolved model (a ``hub.ModelSource``): path or Hub id + commit, and its config hash."""
    if source is None:
        return None
    record = dict(source.describe())
    if "path" in record:
        record["path"] = str(Path(record["path"]).resolve())
    record["config_sha256"] = config_sha256(source.folder)
    return record


def pinned_spec(record: dict | None) -> str | None:
    """The model flag value that names exactly the recorded model: its path, or ``repo/sub@commit``."""
    if record is None:
        return None
    if "path" in record:
        return record["path"]
    name = "/".join(part for part in (record["hub_id"], record.get("subfolder")) if part)
    pin = record.get("commit") or record.get("revision")
    return f"{name}@{pin}" if pin else name


def condition_record(path: str) -> dict:
    """A conditioning file as given, where it was, and its content hash."""
    return {"given": path, "path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def check_conditions(records: list[dict]) -> list[str]:
    """The recorded conditioning files' paths, after checking they still hold the same bytes."""
    paths = []
    for record in records:
        path = Path(record["path"])
        if not path.is_file():
            raise ProvenanceError(f"conditioning file {record['path']} of the recorded video is missing: put it "
                                  "back there to regenerate the video")
        if file_sha256(path) != record["sha256"]:
            raise ProvenanceError(f"conditioning file {record['path']} has changed since the video was made "
                                  "(its sha256 differs): put the original file back to regenerate the video")
        paths.append(str(path))
    return paths


def to_json(record: dict) -> str:
    return json.dumps(record, indent=2, ensure_ascii=False, sort_keys=False)


def write_sidecar(output: str | os.PathLike, record: dict) -> Path:
    """``<output stem>.json`` beside ``output``; written to a temporary name, then renamed."""
    output = Path(output)
    path = output.with_suffix(".json")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(to_json(record) + "\n")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_record(path: str | os.PathLike) -> dict:
    """The record of a sidecar (.json) or of a video / image that carries one inside."""
    path = Path(path)
    if not path.is_file():
        raise ProvenanceError(f"{path} does not exist: give the .json written beside a generated video (or the "
                              "video itself)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            text = path.read_text()
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                text = image.text.get(PNG_KEY)
        else:
            import av

            with av.open(str(path)) as container:
                text = container.metadata.get("comment")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ProvenanceError(f"cannot read {path}: {error}") from None
    if not text:
        raise ProvenanceError(f"{path} carries no soraplan record: give the .json written beside the video")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProvenanceError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ProvenanceError(f"{path} is not a soraplan sample record (expected \"format\": \"{FORMAT}\")")
    return record
