"""What the web UI asks for, checked and turned into one pipeline call; no gradio in here.

A request names its conditioning the way a person thinks of it (a first frame, a last frame, keyframes
with their positions, a video to continue) and every bad value is rejected with a sentence that says
what to change, before any work starts.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..utils.text import counted

RESOLUTION_MODES = {
    "fixed: crop and resize to height x width": True,
    "keep aspect ratio: largest size within max area": False,
}
MASK_TYPES = ["auto", "i2v", "transition", "continuation", "t2iv", "clear", "random_temporal"]


class RequestError(ValueError):
    """A user mistake, shown to the user as it is."""


@dataclass
class Request:
    prompt: str
    negative_prompt: str = ""
    first_frame: str | None = None
    last_frame: str | None = None
    keyframes: list[str] = field(default_factory=list)
    keyframe_positions: str = ""
    video: str | None = None
    mask_type: str = "auto"
    num_frames: int = 17
    resolution_mode: str = next(iter(RESOLUTION_MODES))
    height: int = 64
    width: int = 64
    max_area: int = 64 * 64
    steps: int = 100
    guidance_scale: float = 7.5
    scheduler: str | None = None  # a --sample_method name; None: the pipeline folder's own
    seed: int = 0
    random_seed: bool = False
    step_cache: bool = False
    cache_threshold: float = 0.4
    loras: list[str] | None = None  # adapter names (soraplan serve --lora); None: every one served
    lora_strength: float = 1.0  # times each adapter's own scale
    loop: bool = False  # the last frame is the first (a video that plays on repeat)


def _check_image(path: str, what: str) -> str:
    from PIL import Image, UnidentifiedImageError

    from ..data.video_io import IMAGE_EXTENSIONS

    if not Path(path).is_file():
        raise RequestError(f"{what}: the upload is missing; upload it again")
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise RequestError(f"{what} ({Path(path).name}) is not an image; upload a PNG, JPEG or WebP picture") from None
    if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
        raise RequestError(f"{what} ({Path(path).name}): name it with an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    return path


def _check_video(path: str) -> str:
    from ..data.video_io import VIDEO_EXTENSIONS, VideoReadError, read_video

    if not Path(path).is_file():
        raise RequestError("video to continue: the upload is missing; upload it again")
    if Path(path).suffix.lower() not in VIDEO_EXTENSIONS:
        raise RequestError(f"{Path(path).name} is not a video file ({', '.join(VIDEO_EXTENSIONS)}); upload a clip")
    try:
        read_video(path, max_frames=1)
    except VideoReadError:
        raise RequestError(f"{Path(path).name} cannot be decoded as video; upload an mp4, webm or mov clip") from None
    return path


def pipeline_arguments(request: Request) -> dict:
    """Keyword arguments of ``OpenSoraInpaintPipeline.__call__`` (without the generator), or RequestError."""
    if not request.prompt or not request.prompt.strip():
        raise RequestError("write a prompt: what should happen in the video")
    if request.num_frames < 1 or (request.num_frames - 1) % 4:
        raise RequestError(f"frames must be 4k+1 (1, 5, 9, 13, 17, ...), got {request.num_frames}")
    if request.resolution_mode not in RESOLUTION_MODES:
        raise RequestError(f"unknown resolution mode {request.resolution_mode!r}")
    if request.mask_type not in MASK_TYPES:
        raise RequestError(f"unknown mask type {request.mask_type!r}; choose one of {', '.join(MASK_TYPES)}")
    if not 1 <= request.steps <= 1000:
        raise RequestError(f"steps must lie in 1..1000, got {request.steps}")
    keyframes = [k for k in (request.keyframes or []) if k]
    given = [name for name, value in (("keyframes", keyframes), ("a video", request.video),
                                      ("first/last frames", request.first_frame or request.last_frame)) if value]
    if len(given) > 1:
        raise RequestError(f"give one kind of conditioning, not {' and '.join(given)}: clear the others")

    indices = None
    if keyframes:
        conditions = [_check_image(k, f"keyframe {i + 1}") for i, k in enumerate(keyframes)]
        try:
            indices = [int(v) for v in request.keyframe_positions.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise RequestError(f"keyframe positions must be comma-separated frame numbers, got "
                               f"{request.keyframe_positions!r}") from None
        if len(indices) != len(conditions):
            raise RequestError(f"{len(conditions)} keyframes but {len(indices)} positions: give one frame number "
                               "per keyframe, e.g. 0,8,16")
    elif request.video:
        conditions = [_check_video(request.video)]
    elif request.first_frame:
        conditions = [_check_image(request.first_frame, "first frame")]
        if request.last_frame:
            conditions.append(_check_image(request.last_frame, "last frame"))
    elif request.last_frame:  # only an end frame: generate what leads to it
        conditions, indices = [_check_image(request.last_frame, "last frame")], [-1]
    else:
        conditions = []  # text-to-video
    return dict(
        prompt=request.prompt.strip(),
        negative_prompt=request.negative_prompt or None,
        conditions=conditions or None,
        condition_indices=indices,
        mask_type=None if request.mask_type == "auto" else request.mask_type,
        num_frames=int(request.num_frames),
        height=int(request.height),
        width=int(request.width),
        crop_for_hw=RESOLUTION_MODES[request.resolution_mode],
        max_hxw=int(request.max_area),
        num_inference_steps=int(request.steps),
        guidance_scale=float(request.guidance_scale),
    )


class VideoGenerator:
    """One pipeline shared by every visitor; one generation at a time (the lock backs up the queue)."""

    def __init__(self, pipe, output_dir: str | Path | None = None, fps: int = 8, recorder=None,
                 adapters: dict[str, tuple[Path, float]] | None = None):
        """``recorder(arguments, seed, request, result, loras) -> dict``: the provenance record of one video
        (soraplan.provenance), written beside it as ``<name>.json`` and into the mp4; None writes none.
        ``adapters``: name -> (file, scale) of the LoRA adapters loaded into ``pipe`` (not merged)."""
        self.pipe = pipe
        self.adapters = dict(adapters or {})
        self.fps = fps
        self.recorder = recorder
        self.output_dir = Path(output_dir or tempfile.mkdtemp(prefix="soraplan-ui-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        from ..schedulers import method_name

        self.own_scheduler = method_name(pipe.scheduler)  # the folder's own, kept as it was saved
        self._schedulers = {self.own_scheduler: pipe.scheduler}

    def _scheduler(self, name: str):
        from ..schedulers import build_scheduler

        if name not in self._schedulers:
            try:
                self._schedulers[name] = build_scheduler(name)
            except ValueError as error:
                raise RequestError(str(error)) from None
        return self._schedulers[name]

    def is_long(self, request: Request) -> bool:
        """Longer than the model's clip, or a loop: a chain of segments (soraplan.pipelines.long_video)."""
        return request.loop or request.num_frames > self.pipe.clip_frames

    def generate(self, request: Request, on_segment=None) -> tuple[Path, str]:
        """(mp4 path, one-line report); RequestError for anything the user can fix. The record, when
        there is a recorder, is ``path.with_suffix(".json")``. ``on_segment(i, n)``: called before
        segment i of n of a long video."""
        from ..data.video_io import write_video
        from ..provenance import frames_sha256, to_json, write_sidecar

        arguments = pipeline_arguments(request)
        request = dataclasses.replace(request, scheduler=request.scheduler or self.own_scheduler)
        seed = random.randrange(2**31) if request.random_seed else int(request.seed)
        if request.step_cache and not request.cache_threshold > 0:
            raise RequestError("step caching needs a threshold above 0 (0.4 is about 2x fewer evaluations)")
        loras = self._loras(request)
        with self._lock:
            if self.adapters:  # the chosen ones at their scales, the rest off
                if loras:
                    self.pipe.transformer.enable_lora()
                    self.pipe.transformer.set_adapters([name for name, _, _ in loras], [s for _, _, s in loras])
                else:
                    self.pipe.transformer.disable_lora()
            self.pipe.scheduler = self._scheduler(request.scheduler)
            self.pipe.enable_step_cache(request.cache_threshold if request.step_cache else None)
            started = time.time()
            try:
                if self.is_long(request):
                    result = self._generate_long(arguments, request, seed, on_segment)
                else:
                    result = self.pipe(**arguments, generator=torch.Generator().manual_seed(seed))
            except (ValueError, FileNotFoundError, OSError) as error:
                raise RequestError(str(error)) from None
            cache = self.pipe.step_cache_stats
        seconds = time.time() - started
        video = result.videos[0]  # (T, H, W, 3) uint8
        path = self.output_dir / f"soraplan_{int(time.time() * 1000)}_{seed}.mp4"
        comment = None
        if self.recorder is not None:
            record = {**self.recorder(arguments, seed, request, result, loras), "output": path.name,
                      "sample_index": None,
                      "frames_sha256": frames_sha256(video)}
            write_sidecar(path, record)
            comment = to_json(record)
        write_video(path, video, fps=self.fps, comment=comment)
        segments = getattr(result, "segments", None)
        kind = (f"{len(segments)} segments of up to {self.pipe.clip_frames} frames" + (", a loop" if request.loop else "")
                if segments is not None else result.mask_type.value)
        report = (f"{kind}: {video.shape[0]} frames of {video.shape[2]}x{video.shape[1]}, "
                  f"seed {seed}, {request.scheduler} {counted(request.steps, 'step')}, {seconds:.1f} s")
        if cache is not None:
            report += f", {cache.computed}/{cache.calls} transformer evaluations (step cache)"
        if loras:
            report += ", LoRA " + ", ".join(f"{name} x {scale:g}" for name, _, scale in loras)
        return path, report

    def _generate_long(self, arguments: dict, request: Request, seed: int, on_segment):
        """The long video of a request (every frame kept: the page shows it whole)."""
        from ..pipelines.long_video import generate_long_video

        placement = ("prompt", "conditions", "condition_indices", "mask_type", "num_frames", "height", "width",
                     "crop_for_hw", "max_hxw")
        return generate_long_video(
            self.pipe, arguments["prompt"], arguments["conditions"], loop=request.loop,
            **{key: arguments[key] for key in placement if key not in ("prompt", "conditions")},
            on_segment=on_segment, generator=torch.Generator().manual_seed(seed),
            **{key: value for key, value in arguments.items() if key not in placement})

    def _loras(self, request: Request) -> list[tuple[str, Path, float]]:
        """(name, file, scale) of the adapters a request turns on."""
        names = list(self.adapters) if request.loras is None else list(request.loras)
        unknown = [name for name in names if name not in self.adapters]
        if unknown:
            served = ", ".join(self.adapters) or "none (start soraplan serve with --lora)"
            raise RequestError(f"unknown LoRA adapter {unknown[0]!r}; served: {served}")
        if not 0 <= request.lora_strength <= 2:
            raise RequestError(f"LoRA strength must lie in [0, 2], got {request.lora_strength:g}")
        return [(name, self.adapters[name][0], self.adapters[name][1] * request.lora_strength) for name in names]
