"""Model folders named by a local path or by a Hugging Face Hub id.

Every flag that names a model (``--model_path``, ``--ae_path``, ``--text_encoder_name_1``,
``--caption_refiner``, the trainers' ``--model``/``--pretrained``, ``soraplan serve --pipeline``) goes
through :func:`resolve_model` and gets back a local folder, so the loaders below it only ever see folders.

A spec is a local folder (used as it is; nothing is fetched) or ``ORG/NAME[/SUBFOLDER][@REVISION]``
(``LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v``, ``google/mt5-xxl@main``). Hub ids are fetched by
huggingface_hub into its cache, so its progress bars, resumable downloads, ``HF_HUB_OFFLINE``, ``HF_TOKEN``
and ``HF_HOME`` all apply. Only what the named folder needs is fetched: its own files (for a pipeline folder,
also its component folders), one weight format (safetensors when the folder has them, else PyTorch ``.bin``),
never TensorFlow/Flax/ONNX copies, docs or media. The release repository holds several 10 GB models side by
side and mT5-XXL ships its weights three times, so fetching "the repository" would be wrong by tens of GB.

Every failure a user can hit (offline and not cached, no such repository or folder, a gated repository
without a token, a download that stopped half-way) is a :class:`ModelSourceError` with a one-line message
saying what to do; a folder is never handed to a loader before every file it needs is on disk.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

# The released Open-Sora Plan v1.3 parts (Hub repository and folder of each).
RELEASE_REPO = "LanguageBind/Open-Sora-Plan-v1.3.0"
RELEASE_I2V = f"{RELEASE_REPO}/any93x640x640_i2v"
RELEASE_T2V = f"{RELEASE_REPO}/any93x640x640"
RELEASE_VAE = f"{RELEASE_REPO}/vae"
RELEASE_CAPTION_REFINER = f"{RELEASE_REPO}/prompt_refiner"
RELEASE_TEXT_ENCODER = "google/mt5-xxl"

# Weights in formats our loaders never read, and files no loader reads at all.
_NEVER_FETCHED = ("*.h5", "*.msgpack", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "*.gguf", "*.mlmodel",
                  "*.md", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp", "*.mp4", ".gitattributes")
_TORCH_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt")
_WEIGHTS = ("*.safetensors",) + _TORCH_PICKLES
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(/[^@]+)?(@[^@\s]+)?$")


class ModelSourceError(ValueError):
    """A model flag names something that cannot be used; the message is one line saying how to fix it."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from (for the provenance of an output) and the local folder that holds it."""

    spec: str  # as given on the command line
    folder: Path  # local folder with config.json / model_index.json
    repo_id: str | None = None  # None for a local folder
    subfolder: str | None = None
    revision: str | None = None  # as asked ("main" when not given)
    commit: str | None = None  # the commit the cached snapshot holds

    def describe(self) -> dict:
        """JSON-ready identity: the Hub id, folder and commit, or the local path."""
        if self.repo_id is None:
            return {"path": str(self.folder)}
        return {"hub_id": self.repo_id, "subfolder": self.subfolder, "revision": self.revision,
                "commit": self.commit}


def is_hub_id(spec: str) -> bool:
    """Looks like ORG/NAME[/SUBFOLDER][@REVISION] (and is not an existing local path)."""
    return not Path(spec).expanduser().exists() and not spec.startswith((".", "/", "~")) and bool(_HUB_ID.match(spec))


def parse_hub_id(spec: str, subfolder: str | None = None, revision: str | None = None) -> tuple[str, str, str]:
    """(repo id, subfolder or "", revision) from ``ORG/NAME[/SUB][@REV]`` plus the separate flags.

    A subfolder in the id and ``--subfolder`` are joined (id first); ``@REV`` and ``--revision`` must agree.
    """
    name, _, rev_in_id = spec.partition("@")
    parts = [p for p in name.split("/") if p]
    repo_id, inner = "/".join(parts[:2]), "/".join(parts[2:])
    folder = "/".join(p.strip("/") for p in (inner, subfolder or "") if p.strip("/"))
    if rev_in_id and revision and rev_in_id != revision:
        raise ModelSourceError(f"{spec} names revision {rev_in_id} but --revision is {revision}: give one")
    return repo_id, folder, rev_in_id or revision or "main"


def resolve_model(spec: str | os.PathLike, *, subfolder: str | None = None, revision: str | None = None,
                  what: str = "model", cache_dir: str | Path | None = None,
                  local_dir: str | Path | None = None, unless_pipeline: str | None = None) -> ModelSource:
    """A local folder for ``spec``: the folder itself, or a Hub folder fetched (or found) in the cache.

    ``unless_pipeline``: when set and the Hub folder is not a pipeline folder (model_index.json), fail with
    this message before anything is downloaded (a transformer alone cannot sample without its VAE and text
    encoder, and it is 11 GB).

    ``what`` names the flag in error messages (``--ae_path``, ...); ``cache_dir`` replaces the Hugging
    Face cache (HF_HUB_CACHE); ``local_dir`` puts a Hub folder's files there instead of the cache.
    """
    spec = str(spec)
    local = Path(spec).expanduser()
    if local.exists():
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise ModelSourceError(f"{what} {folder} is not a folder")
        return ModelSource(spec=spec, folder=folder)
    if not is_hub_id(spec):
        raise ModelSourceError(f"{what} {spec}: no such folder (give a local folder or a Hub id ORG/NAME[/SUBFOLDER])")
    repo_id, folder, rev = parse_hub_id(spec, subfolder, revision)
    return _fetch(spec, repo_id, folder, rev, what, cache_dir=cache_dir, local_dir=local_dir,
                  unless_pipeline=unless_pipeline)


def offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return constants.HF_HUB_OFFLINE if value is None else value.strip().upper() in ("1", "ON", "YES", "TRUE")


def _fetch(spec: str, repo_id: str, subfolder: str, revision: str, what: str,
           cache_dir: str | Path | None = None, local_dir: str | Path | None = None,
           unless_pipeline: str | None = None) -> ModelSource:
    from huggingface_hub import snapshot_download

    files, no_network = _list_repo_files(spec, repo_id, revision, what, cache_dir)
    wanted = files_needed(files, subfolder, f"{what} {spec}")
    index = f"{subfolder}/model_index.json" if subfolder else "model_index.json"
    if unless_pipeline and index not in wanted:
        raise ModelSourceError(f"{what} {spec}: {unless_pipeline}")
    try:
        snapshot = snapshot_download(repo_id, revision=revision, allow_patterns=wanted, cache_dir=cache_dir,
                                     local_files_only=no_network, local_dir=local_dir)
    except Exception as error:  # noqa: BLE001  (every huggingface_hub failure becomes one line)
        raise _one_line(error, spec, repo_id, revision, what) from None
    folder = Path(snapshot) / subfolder if subfolder else Path(snapshot)
    missing = [f for f in wanted if not (Path(snapshot) / f).is_file()]
    missing += _missing_shards(folder)
    if missing:
        shown = ", ".join(sorted(set(missing))[:3]) + (" ..." if len(set(missing)) > 3 else "")
        raise ModelSourceError(
            f"{what} {spec} is only partly downloaded (missing {shown}); run the command again with network "
            f"to resume the download (or `soraplan download`), or give a complete local folder")
    commit = Path(snapshot).name if local_dir is None else None
    return ModelSource(spec=spec, folder=folder, repo_id=repo_id, subfolder=subfolder or None,
                       revision=revision, commit=commit)


def _list_repo_files(spec: str, repo_id: str, revision: str, what: str,
                     cache_dir: str | Path | None = None) -> tuple[list[str], bool]:
    """(every file of the repository at ``revision``, whether the Hub is out of reach).

    Online: the Hub's listing. Offline or unreachable: the listing huggingface_hub cached with the
    snapshot, else the files of the cached snapshot folder itself.
    """
    from huggingface_hub import HfApi, get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, OfflineModeIsEnabled

    if not offline():
        try:
            return list(HfApi().list_repo_files(repo_id, revision=revision)), False
        except OfflineModeIsEnabled:
            pass
        except Exception as error:  # noqa: BLE001
            if not _is_connection_error(error):
                raise _one_line(error, spec, repo_id, revision, what) from None
    try:
        return [f.path for f in get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)], True
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        pass
    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, local_files_only=True, cache_dir=cache_dir,
                                          allow_patterns=["config.json", "*/config.json", "model_index.json"]))
    except Exception:  # noqa: BLE001
        raise _not_cached(spec, what) from None
    names = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file() or p.is_symlink()]
    return names, True


def files_needed(repo_files: list[str], subfolder: str, label: str) -> list[str]:
    """The repository paths a loader reads from ``subfolder`` ("" = the root).

    A model folder: its own files (not its sub-folders). A pipeline folder (model_index.json): also each
    component folder one level down. In every folder one weight format: safetensors if there are any, else
    PyTorch pickles; never TF/Flax/ONNX/GGUF weights, docs or media.
    """
    prefix = f"{subfolder}/" if subfolder else ""
    inside = [f[len(prefix):] for f in repo_files if f.startswith(prefix)]
    if not inside:
        raise ModelSourceError(f"{label}: the repository has no folder {subfolder!r}"
                               f"{_folders_with_models(repo_files)}")
    top = {f for f in inside if "/" not in f}
    if "model_index.json" in top:
        chosen = [f for f in inside if f.count("/") <= 1]
    elif "config.json" in top:
        chosen = sorted(top)
    else:
        where = f"folder {subfolder!r}" if subfolder else "root"
        raise ModelSourceError(f"{label}: no model at the repository's {where} (no config.json)"
                               f"{_folders_with_models(repo_files)}")
    keep = []
    by_dir: dict[str, list[str]] = {}
    for f in chosen:
        by_dir.setdefault(f.rpartition("/")[0], []).append(f)
    for files in by_dir.values():
        has_safetensors = any(f.endswith(".safetensors") for f in files)
        for f in files:
            base = f.rpartition("/")[2]
            if any(fnmatch(base, p) for p in _NEVER_FETCHED):
                continue
            if has_safetensors and any(fnmatch(base, p) for p in _TORCH_PICKLES):
                continue
            keep.append(prefix + f)
    return sorted(keep)


def _folders_with_models(repo_files: list[str]) -> str:
    """"; folders with a model: a, b" — what to put after the repository id instead."""
    folders = sorted({f.rpartition("/")[0] for f in repo_files
                      if f.rpartition("/")[2] in ("config.json", "model_index.json") and "/" in f})
    return f"; folders with a model: {', '.join(folders[:12])}" if folders else ""


def _missing_shards(folder: Path) -> list[str]:
    """Shards an index names that are not on disk, and a model folder without any weights."""
    missing = []
    for index in folder.glob("*.index.json"):
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
        except (OSError, json.JSONDecodeError):
            missing.append(index.name)
            continue
        missing += [name for name in set(weight_map.values()) if not (folder / name).is_file()]
    if (folder / "config.json").is_file() and not (folder / "model_index.json").is_file():
        config_only = not any(p.is_file() for pattern in _WEIGHTS for p in folder.glob(pattern))
        if config_only and _is_weighted_model(folder / "config.json"):
            missing.append("weights (*.safetensors / *.bin)")
    return missing


def _is_weighted_model(config: Path) -> bool:
    """A config.json that belongs to a model with weights (not a scheduler or processor config)."""
    try:
        fields = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(fields, dict) and ("_class_name" in fields or "model_type" in fields
                                         or "architectures" in fields)


def _is_connection_error(error: Exception) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "TimeoutException", "ConnectionError", "ProxyError",
                         "NetworkError", "ReadTimeout"})


def _not_cached(spec: str, what: str) -> ModelSourceError:
    why = "HF_HUB_OFFLINE is set" if offline() else "the Hub cannot be reached"
    return ModelSourceError(
        f"{what} {spec} is not in the Hugging Face cache and {why}: fetch it first where there is network "
        f"(`soraplan download`, or `hf download`) or give a local folder")


def _one_line(error: Exception, spec: str, repo_id: str, revision: str, what: str) -> ModelSourceError:
    """huggingface_hub's exception -> what the user should do, in one line."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(error, ModelSourceError):
        return error
    if isinstance(error, GatedRepoError):
        return ModelSourceError(
            f"{what} {spec}: {repo_id} is gated; accept its terms on https://huggingface.co/{repo_id} and set "
            f"HF_TOKEN (or run `hf auth login`)")
    if isinstance(error, RevisionNotFoundError):
        return ModelSourceError(f"{what} {spec}: {repo_id} has no revision {revision!r}")
    if isinstance(error, RepositoryNotFoundError):
        return ModelSourceError(
            f"{what} {spec}: no local folder of that name and no Hub repository {repo_id} (if it is private, "
            f"set HF_TOKEN)")
    if isinstance(error, LocalEntryNotFoundError) or _is_connection_error(error):
        return _not_cached(spec, what)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelSourceError(f"{what} {spec}: {first_line}")
