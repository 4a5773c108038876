"""``soraplan serve``: the image-to-video web app (Gradio), by default with the embedded demo model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UserError
from .options import NOT_A_PIPELINE, add_hub_options, add_lora_option, resolve_model_flag


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="web app: upload an image, write a prompt, watch the video")
    p.add_argument("--pipeline", default=None, help="pipeline folder or Hub id (default: the embedded demo model)")
    add_hub_options(p, "--pipeline")
    add_lora_option(p)  # the page's adapter picker offers these
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max_queue", type=int, default=16, help="requests waiting at most; more are turned away")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="default fp16 on GPU, fp32 on CPU")
    p.add_argument("--fps", type=int, default=8, help="frame rate of the mp4s")
    p.add_argument("--output_dir", default=None, help="where the videos are written (default: a temporary folder)")
    p.set_defaults(run=run)


def build_server(args):
    """(app, generator) for ``args``; separate from ``run`` so tests can launch it in-process."""
    if args.max_queue < 1:
        raise UserError("--max_queue must be at least 1")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the web app needs gradio: pip install 'soraplan[ui]'") from None
    import torch

    from ..demo.assets import DEMO_PIPELINE, demo_pipeline_path
    from ..pipelines import load_pipeline
    from ..pipelines.lora import apply_loras, resolve_lora_specs
    from ..ui.app import build_app
    from ..ui.requests import VideoGenerator
    from .demo import shipped_examples
    from .options import DTYPES

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    try:
        source = resolve_model_flag(args.pipeline, "--pipeline", args.subfolder, args.revision,
                                    unless_pipeline=NOT_A_PIPELINE)
        folder = source.folder if source else demo_pipeline_path()
        pipe = load_pipeline(str(folder), torch_dtype=dtype)
        loras = resolve_lora_specs(args.lora)
        names = apply_loras(pipe, loras)  # kept as adapters: each request picks which are on
        pipe.to(device)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    is_demo = args.pipeline is None or str(folder) == str(DEMO_PIPELINE)
    # the demo model is trained on 17 frames of 64x64; a released model defaults to its 93x352x640
    defaults = {} if is_demo else {"num_frames": 93, "height": 352, "width": 640, "max_area": 236544}
    defaults["steps"], defaults["guidance_scale"] = pipe.sampling_settings()  # the pipeline folder's own
    from ..hub import ModelSource

    source = source or ModelSource(spec=str(folder), folder=Path(folder))
    recorder = web_recorder(source, dtype, device, args.fps, getattr(args, "argv", ["serve"]))
    generator = VideoGenerator(pipe, output_dir=args.output_dir, fps=args.fps, recorder=recorder,
                               adapters={name: lora for name, lora in zip(names, loras)})
    return build_app(generator, shipped_examples() if is_demo else None, defaults=defaults), generator


def launch(app, args, block: bool = True):
    """Queue (one generation at a time, at most ``--max_queue`` waiting) and start serving."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    app.queue(max_size=args.max_queue, default_concurrency_limit=1)
    try:
        app.launch(server_name=args.host, server_port=args.port, show_error=True, prevent_thread_lock=not block,
                   quiet=not block)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({error}); pick another --port") from None


def run(args) -> int:
    app, _ = build_server(args)
    launch(app, args)
    return 0


def web_recorder(source, dtype, device, fps: int, argv: list[str]):
    """The web app's videos recorded as ``soraplan sample`` runs, so ``soraplan sample --from_json`` makes
    one again: a request maps onto sample options (the prompt as typed, no template, its negative prompt)."""
    from ..provenance import condition_record, file_sha256, model_record
    from .sample import option_defaults
    from .sample_record import Job, sample_record

    models = {"model_path": model_record(source), "ae_path": None, "text_encoder_name_1": None}
    defaults = option_defaults()
    hashes: dict = {}

    def record(arguments: dict, seed: int, request, result, loras=()) -> dict:
        args = argparse.Namespace(**{**defaults, "argv": argv})
        args.model_path = str(source.folder)
        args.prompt_template, args.negative_prompt = "{}", arguments["negative_prompt"] or ""
        args.mask_type = arguments["mask_type"]
        for key in ("num_frames", "height", "width", "crop_for_hw", "max_hxw"):
            setattr(args, key, arguments[key])
        args.sample_method, args.seed, args.fps, args.crf = request.scheduler, seed, fps, 18
        args.cache_threshold = request.cache_threshold if request.step_cache else 0.0
        args.loop = request.loop
        args.anchor = getattr(result, "anchor", None)  # a long video's: the model's default, resolved
        conditions = arguments["conditions"]
        job = Job(0, arguments["prompt"], conditions, arguments["condition_indices"],
                  condition_records=[condition_record(path) for path in conditions] if conditions else None)
        frames, height, width = result.videos.shape[1:4]
        used = dict(models)
        if loras:  # as `soraplan sample --lora` records them
            used["lora"] = [{"path": str(Path(file).resolve()), "sha256": hashes.setdefault(file, file_sha256(file)),
                             "scale": scale} for _, file, scale in loras]
            args.lora = [f"{entry['path']}:{entry['scale']!r}" for entry in used["lora"]]
        segments = getattr(result, "segments", None)  # a long video (soraplan.pipelines.long_video)
        record = sample_record(args, job, mask_type=None if segments else result.mask_type.value,
                               steps=arguments["num_inference_steps"], guidance=arguments["guidance_scale"],
                               dtype=dtype, device=device, world=1, models=used, refiner=None, frames=frames,
                               height=height, width=width)
        if segments:
            record["long_video"] = {"segment_frames": segments[0]["num_frames"], "overlap": args.overlap,
                                    "anchor": args.anchor, "loop": args.loop, "crossfade": args.crossfade,
                                    "segments": segments}
        return record

    return record
