"""``soraplan sample``'s side of provenance: the record written beside each output, and ``--from_json``.

The generic parts (hashes, sidecar files, reading a record back) are in :mod:`soraplan.provenance`; this
module knows the sample command's options: which of them a record keeps, and how a recorded run is turned
back into options. A replay takes every recorded option except where the outputs go and which devices run
them, pins each model to what was used (a local path, or the Hub commit), checks the conditioning files
and the models' configs against their hashes, and feeds the recorded (refined) prompt to the text encoder
with the refiner off, so the same machine and dtype give the same frames.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__
from ..provenance import FORMAT, ProvenanceError, check_conditions, pinned_spec, read_record
from .errors import UserError
from .options import DTYPES

# Options a replay takes from the current command line, not from the record: where outputs go and what
# runs them (they do not change the frames; --dtype does, so it is taken only when given).
RUNTIME_OPTIONS = ("save_img_path", "device", "sp", "cfg_parallel", "local_rank", "world_size", "cache_dir",
                   "from_json", "compile", "dtype")
# Options that name a replay's inputs: the record fixes them.
INPUT_OPTIONS = ("model_path", "subfolder", "revision", "ae_path", "text_encoder_name_1", "caption_refiner",
                 "refine_caption", "enhance_video", "text_prompt", "conditional_pixel_values_path",
                 "conditional_pixel_values_indices", "lora", "storyboard")
NOT_RECORDED = ("run", "argv", "command", "from_json")
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass
class Job:
    """One prompt's work: its number (it names the files), text and conditioning."""

    index: int
    prompt: str  # as the user wrote it
    conditions: list[str] | None = None
    indices: list[int] | None = None
    refined: str | None = None  # the caption refiner's rewrite, when asked for
    condition_records: list[dict] | None = None  # paths and hashes (filled before sampling)
    storyboard: list[tuple[str, int]] | None = None  # a long video's (prompt, frames) parts (--storyboard)

    @property
    def text(self) -> str:
        """The prompt the text encoder gets (before the template)."""
        return self.refined or self.prompt


def command_line(args) -> str:
    return shlex.join(["soraplan", *getattr(args, "argv", [])])


def recorded_arguments(args, job: Job, steps: int, guidance: float, dtype: torch.dtype) -> dict:
    """Every sample option as this job ran: one prompt, its own conditioning, resolved defaults."""
    arguments = {key: value for key, value in vars(args).items() if key not in NOT_RECORDED
                 and (value is None or isinstance(value, (str, int, float, bool, list)))}
    arguments.update(
        text_prompt=[job.prompt],
        conditional_pixel_values_path=",".join(job.conditions) if job.conditions else None,
        conditional_pixel_values_indices=",".join(str(i) for i in job.indices) if job.indices else None,
        num_sampling_steps=steps, guidance_scale=guidance, dtype=DTYPE_NAMES[dtype],
    )
    return arguments


def sample_record(args, job: Job, *, mask_type: str, steps: int, guidance: float, dtype: torch.dtype,
                  device: torch.device, world: int, models: dict, refiner: dict | None,
                  frames: int, height: int, width: int) -> dict:
    """The record shared by a job's outputs (each output adds its name, sample index and frame hash)."""
    return {
        "format": FORMAT,
        "soraplan_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(args),
        "prompt_index": job.index,
        "prompt": job.prompt,
        "storyboard": [list(part) for part in job.storyboard] if job.storyboard else None,
        "refined_prompt": job.refined,
        "caption_refiner": refiner,
        "prompt_template": args.prompt_template,
        "text": args.prompt_template.format(job.text),
        "negative_prompt": args.negative_prompt,
        "conditions": job.condition_records or [],
        "condition_indices": job.indices,
        "mask_type": mask_type,
        "mask_type_asked": args.mask_type,
        "seed": args.seed,
        "num_samples_per_prompt": args.num_samples_per_prompt,
        "sampler": {
            "method": args.sample_method, "steps": steps, "guidance_scale": guidance,
            "guidance_rescale": args.guidance_rescale, "prediction_type": args.prediction_type,
            "rescale_betas_zero_snr": args.rescale_betas_zero_snr, "v1_5_scheduler": args.v1_5_scheduler,
            "noise_strength": args.noise_strength, "cache_threshold": args.cache_threshold,
            "max_sequence_length": args.max_sequence_length,
        },
        "video": {
            "frames": frames, "height": height, "width": width, "num_frames_asked": args.num_frames,
            "height_asked": args.height, "width_asked": args.width, "crop_for_hw": args.crop_for_hw,
            "max_hxw": args.max_hxw, "fps": args.fps, "crf": args.crf,
        },
        "runtime": {
            "device": str(device), "dtype": DTYPE_NAMES[dtype], "torch": torch.__version__, "processes": world,
            "sp": args.sp, "cfg_parallel": args.cfg_parallel, "compile": args.compile, "fuse_qkv": args.fuse_qkv,
            "enable_tiling": args.enable_tiling, "save_memory": args.save_memory,
        },
        "models": models,
        "arguments": recorded_arguments(args, job, steps, guidance, dtype),
    }


@dataclass
class Replay:
    """A recorded run to make again: the record and the one job it made."""

    record: dict
    job: Job
    overrides: list[str]  # options given beside --from_json that change the video (then it is a variation)


def prepare_replay(args, defaults: dict) -> Replay:
    """Turn ``args`` (``--from_json`` plus runtime options) into the recorded run's options, in place."""
    named = [f"--{key}" for key in INPUT_OPTIONS if getattr(args, key, None) != defaults.get(key)]
    if named:
        raise UserError(f"--from_json regenerates a recorded video from its own inputs; drop {', '.join(named)} "
                        "(or start a new run without --from_json)")
    try:
        record = read_record(args.from_json)
    except ProvenanceError as error:
        raise UserError(str(error)) from None
    recorded = record.get("arguments") or {}
    overrides = []
    for key, value in recorded.items():
        if key in NOT_RECORDED or key in INPUT_OPTIONS or not hasattr(args, key):
            continue
        current = getattr(args, key)
        if key in RUNTIME_OPTIONS:
            if key == "dtype" and current is None:
                args.dtype = value
            continue
        if current != defaults.get(key) and current != value:
            overrides.append(f"--{key}")  # given on this command line: it wins
            continue
        setattr(args, key, value)
    if args.save_img_path == defaults.get("save_img_path"):  # never over the recorded video itself
        args.save_img_path = str(Path(args.from_json).parent / "replay")
    models = record.get("models") or {}
    try:
        args.model_path = pinned_spec(models["model_path"])
        args.ae_path = pinned_spec(models.get("ae_path"))
        args.text_encoder_name_1 = pinned_spec(models.get("text_encoder_name_1"))
        args.lora = [f"{adapter['path']}:{adapter['scale']!r}" for adapter in check_adapters(models.get("lora"))] or None
        job = Job(index=int(record["prompt_index"]), prompt=record["prompt"], refined=record.get("refined_prompt"),
                  indices=record.get("condition_indices"), condition_records=record.get("conditions") or None,
                  storyboard=[(str(text), int(frames)) for text, frames in record.get("storyboard") or []] or None)
        job.conditions = check_conditions(job.condition_records) if job.condition_records else None
    except ProvenanceError as error:
        raise UserError(str(error)) from None
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{args.from_json}: the record is incomplete ({error}); it cannot be replayed") from None
    args.subfolder = args.revision = args.caption_refiner = None
    args.refine_caption = False
    args.text_prompt = [job.prompt]  # (the job carries it; set for the checks every run goes through)
    return Replay(record, job, overrides)


def check_adapters(records: list[dict] | None) -> list[dict]:
    """The recorded LoRA adapters, after checking each file still holds the same bytes."""
    from ..provenance import file_sha256

    for adapter in records or []:
        path = Path(adapter["path"])
        if not path.is_file() or file_sha256(path) != adapter["sha256"]:
            raise ProvenanceError(f"LoRA {path} is {'changed' if path.is_file() else 'missing'}: it is not the adapter "
                                  "that made the recorded video; restore it to regenerate the video")
    return records or []


def check_models(replay: Replay, models: dict) -> None:
    """The models found now must be the recorded ones (same config hash); else the video cannot match."""
    for flag, recorded in (replay.record.get("models") or {}).items():
        if not isinstance(recorded, dict):  # the LoRA list: checked by hash in prepare_replay
            continue
        now = models.get(flag)
        if recorded and now and recorded.get("config_sha256") != now.get("config_sha256"):
            where = recorded.get("path") or pinned_spec(recorded)
            raise UserError(f"--{flag} {where} is not the model that made the recorded video (its configuration "
                            "changed): restore that model to regenerate the video")
