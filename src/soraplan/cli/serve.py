"""``soraplan serve``: the image-to-video web app (Gradio), by default with the embedded demo model."""

from __future__ import annotations

from .errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="web app: upload an image, write a prompt, watch the video")
    p.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded demo model)")
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
    from ..ui.app import build_app
    from ..ui.requests import VideoGenerator
    from .demo import shipped_examples
    from .sample import DTYPES

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if device.type == "cuda" else torch.float32)
    try:
        folder = args.pipeline or demo_pipeline_path()
        pipe = load_pipeline(str(folder), torch_dtype=dtype).to(device)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise UserError(str(error)) from None
    is_demo = args.pipeline is None or str(folder) == str(DEMO_PIPELINE)
    # the demo model is trained on 17 frames of 64x64; a released model defaults to its 93x352x640
    defaults = {} if is_demo else {"num_frames": 93, "height": 352, "width": 640, "max_area": 236544}
    defaults["steps"], defaults["guidance_scale"] = pipe.sampling_settings()  # the pipeline folder's own
    generator = VideoGenerator(pipe, output_dir=args.output_dir, fps=args.fps)
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
