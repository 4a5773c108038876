"""The Gradio web app of ``soraplan serve``: upload an image (or two, keyframes, a video), write a prompt,
watch the video. One generation runs at a time per model; the others wait in a bounded queue.

The event handler is one function with a typed, documented signature, so the same endpoint serves the
page and API clients (``gradio_client``: ``Client(url).predict(..., api_name="/generate")``).
"""

from __future__ import annotations

import gradio as gr

from ..schedulers import SAMPLE_METHODS
from .requests import MASK_TYPES, RESOLUTION_MODES, Request, RequestError, VideoGenerator

TITLE = "soraplan: image-to-video"
INTRO = (
    "Upload a **first frame** (image-to-video), a first and a **last frame** (transition), "
    "**keyframes** with their frame numbers, or a **video** to continue, and describe what happens. "
    "Nothing uploaded: text-to-video."
)


def picture_upload(label: str) -> gr.Image:
    """An image upload whose unreadable files end in a one-sentence message rather than a server
    exception. (The check wraps this instance's preprocessing: a gr.Image subclass would make gradio
    write a .pyi stub next to this module.)"""
    component = gr.Image(label=label, type="filepath", sources=["upload", "clipboard"])
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, SyntaxError):  # PIL's UnidentifiedImageError is an OSError
            raise gr.Error(f"{label}: the upload is not an image; upload a PNG, JPEG or WebP picture",
                           print_exception=False) from None

    component.preprocess = checked
    return component


def build_app(generator: VideoGenerator, examples: list[dict] | None = None, *, defaults: dict | None = None) -> gr.Blocks:
    """The page; ``examples`` are the demo's ({task, conditions, prompt}), ``defaults`` override field values."""
    d = {**Request(prompt="", scheduler=generator.own_scheduler).__dict__, **(defaults or {})}

    def generate(prompt: str, negative_prompt: str, first_frame: str | None, last_frame: str | None,
                 keyframes: list[str] | None, keyframe_positions: str, video: str | None, mask_type: str,
                 num_frames: float, resolution_mode: str, height: float, width: float, max_area: float,
                 steps: float, guidance_scale: float, scheduler: str, seed: float, random_seed: bool,
                 step_cache: bool, cache_threshold: float, loras: list[str] | None = None, lora_strength: float = 1.0,
                 loop: bool = False, progress=gr.Progress(track_tqdm=True)):
        """Generate one video; returns (video, downloadable file, report)."""
        request = Request(
            prompt=prompt or "", negative_prompt=negative_prompt or "", first_frame=first_frame,
            last_frame=last_frame, keyframes=list(keyframes or []), keyframe_positions=keyframe_positions or "",
            video=video, mask_type=mask_type, num_frames=_whole(num_frames, "frames"),
            resolution_mode=resolution_mode, height=_whole(height, "height"), width=_whole(width, "width"),
            max_area=_whole(max_area, "max area"), steps=_whole(steps, "steps"), guidance_scale=float(guidance_scale),
            scheduler=scheduler, seed=_whole(seed, "seed"), random_seed=bool(random_seed),
            step_cache=bool(step_cache), cache_threshold=float(cache_threshold or 0),
            loras=None if loras is None else list(loras), lora_strength=float(lora_strength), loop=bool(loop))

        def on_segment(index: int, count: int) -> None:
            progress((index, count), desc=f"segment {index + 1} of {count}")

        try:
            path, report = generator.generate(request, on_segment=on_segment)
        except RequestError as error:
            raise gr.Error(str(error), print_exception=False) from None
        sidecar = path.with_suffix(".json")
        return str(path), [str(path)] + ([str(sidecar)] if sidecar.is_file() else []), report

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=1):
                prompt = gr.Textbox(label="Prompt", value=d.get("prompt") or "", lines=2,
                                    placeholder="a red circle moves to the right on a black background")
                with gr.Row():
                    first_frame = picture_upload("First frame")
                    last_frame = picture_upload("Last frame (optional)")
                with gr.Accordion("Keyframes or a video instead", open=False):
                    keyframes = gr.File(label="Keyframes (images)", file_count="multiple", type="filepath")
                    keyframe_positions = gr.Textbox(label="Keyframe frame numbers", placeholder="0,8,16 (-1 = last)")
                    video = gr.Video(label="Video to continue", sources=["upload"])
                with gr.Group(visible=bool(generator.adapters)):  # soraplan serve --lora
                    loras = gr.CheckboxGroup(list(generator.adapters), value=list(generator.adapters),
                                             label="LoRA adapters (each at the scale it was served with)")
                    lora_strength = gr.Slider(0, 2, value=1.0, step=0.05, label="LoRA strength (x each scale)")
                run = gr.Button("Generate", variant="primary")
                with gr.Accordion("Settings", open=False):
                    negative_prompt = gr.Textbox(label="Negative prompt", value=d["negative_prompt"])
                    mask_type = gr.Dropdown(MASK_TYPES, value=d["mask_type"], label="Mask type (auto: from the inputs)")
                    clip = generator.pipe.clip_frames
                    with gr.Row():
                        num_frames = gr.Slider(1, 8 * (clip - 1) + 1, value=d["num_frames"], step=4, label=(
                            f"Frames (4k+1; beyond the model's {clip}, a chain of segments that continue each other)"))
                        loop = gr.Checkbox(value=d["loop"], label="Loop (ends on its first frame)")
                    resolution_mode = gr.Radio(list(RESOLUTION_MODES), value=d["resolution_mode"], label="Resolution")
                    with gr.Row():
                        height = gr.Slider(32, 720, value=d["height"], step=16, label="Height")
                        width = gr.Slider(32, 1280, value=d["width"], step=16, label="Width")
                    max_area = gr.Number(value=d["max_area"], precision=0, label="Max area (keep-aspect mode)")
                    steps = gr.Slider(1, 200, value=d["steps"], step=1, label="Sampling steps")
                    guidance_scale = gr.Slider(0, 15, value=d["guidance_scale"], step=0.5, label="Guidance scale")
                    scheduler = gr.Dropdown(list(SAMPLE_METHODS), value=d["scheduler"], label="Scheduler")
                    with gr.Row():
                        seed = gr.Number(value=d["seed"], precision=0, label="Seed")
                        random_seed = gr.Checkbox(value=d["random_seed"], label="Random seed")
                    with gr.Row():
                        step_cache = gr.Checkbox(value=d["step_cache"], label="Step caching (faster)")
                        cache_threshold = gr.Slider(0.05, 1.5, value=d["cache_threshold"], step=0.05,
                                                    label="Cache threshold")
            with gr.Column(scale=1):
                result = gr.Video(label="Result", autoplay=True, loop=True, elem_id="result-video")
                download = gr.File(label="Download (the video and its record: prompt, seed, settings, models)",
                                   file_count="multiple")
                report = gr.Markdown(elem_id="report")
        inputs = [prompt, negative_prompt, first_frame, last_frame, keyframes, keyframe_positions, video, mask_type,
                  num_frames, resolution_mode, height, width, max_area, steps, guidance_scale, scheduler, seed,
                  random_seed, step_cache, cache_threshold, loras, lora_strength, loop]
        run.click(generate, inputs=inputs, outputs=[result, download, report], api_name="generate",
                  concurrency_limit=1, concurrency_id="model")
        prompt.submit(generate, inputs=inputs, outputs=[result, download, report], api_visibility="private",
                      concurrency_limit=1, concurrency_id="model")
        if examples:
            rows = []
            for example in examples:
                conditions = list(example["conditions"])
                is_video = example.get("task") == "continuation"
                first = None if is_video or not conditions else conditions[0]
                last = conditions[1] if not is_video and len(conditions) > 1 else None
                rows.append([example["prompt"], first, last, conditions[0] if is_video else None])
            gr.Examples(rows, inputs=[prompt, first_frame, last_frame, video], label="Examples from the demo world")
    return app


def _whole(value, what: str) -> int:
    """Numbers from the page arrive as floats; API clients may send anything."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} must be a number, got {value!r}", print_exception=False) from None
    if number != int(number):
        raise gr.Error(f"{what} must be a whole number, got {value}", print_exception=False)
    return int(number)
