"""Steps of the demo-model recipe that are not training runs (``scripts/demo/train_demo_model.sh``):

    python -m soraplan.demo.recipe text-encoder OUT [--seed S]
    python -m soraplan.demo.recipe latent-stats VAE_DIR VIDEO_DIR [--clips N]
    python -m soraplan.demo.recipe assemble OUT --transformer DIR --vae DIR --text_encoder DIR [--guidance_scale G]
        [--task_guidance TASK=G ...]
    python -m soraplan.demo.recipe examples OUT [--seed S] [--motions axis|diagonal]

``latent-stats`` is why a freshly trained VAE is usable for diffusion: the transformer is trained on
``(z - shift) * scale`` latents, which should be near zero-mean and unit-variance per channel, so the
per-channel mean and 1/std of the VAE's posterior means over training clips are written into its config
(the fields the released WF-VAE carries as ``shift``/``scale``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from pathlib import Path

import torch


@torch.no_grad()
def measure_latent_stats(vae, videos: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """(shift, scale) per latent channel from clips (each (C, T, H, W) in [-1, 1])."""
    means = torch.cat([vae.encode(v[None]).mean.transpose(0, 1).flatten(1) for v in videos], dim=1)  # (C, N)
    shift = means.mean(dim=1)
    scale = 1.0 / means.std(dim=1).clamp_min(1e-6)
    return shift.tolist(), scale.tolist()


def write_latent_stats(vae_dir: str | Path, video_dir: str | Path, clips: int = 256) -> tuple[list, list]:
    from ..data.clips import list_videos
    from ..data.video_io import read_video
    from ..models.vae import WFVAE

    vae_dir = Path(vae_dir)
    vae = WFVAE.from_pretrained(vae_dir).eval()
    paths = list_videos(video_dir)[:clips]
    if not paths:
        raise FileNotFoundError(f"no videos under {video_dir}")
    videos = [torch.from_numpy(read_video(p)[0]).permute(3, 0, 1, 2).float() / 127.5 - 1 for p in paths]
    shift, scale = measure_latent_stats(vae, videos)
    config_path = vae_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["shift"], config["scale"] = shift, scale
    partial = config_path.with_name(".config.json.partial")
    partial.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(partial, config_path)
    return shift, scale


def _rebuilt(cls, folder: str | Path):
    """``cls.from_pretrained(folder)`` with only its constructor's config fields: an EMA folder also
    carries the EMA's own (decay, optimization_step, ...) and every loaded model the folder it came
    from (``_name_or_path``), neither of which belongs in a shipped config."""
    loaded = cls.from_pretrained(folder)
    fields = inspect.signature(cls.__init__).parameters
    model = cls.from_config({k: v for k, v in loaded.config.items() if k in fields})
    model.load_state_dict(loaded.state_dict())
    return model


def assemble_pipeline(out: str | Path, transformer: str | Path, vae: str | Path, text_encoder: str | Path,
                      sample_method: str = "EulerAncestralDiscrete", guidance_scale: float = 7.5,
                      num_inference_steps: int = 100, task_guidance_scales: dict[str, float] | None = None,
                      num_frames: int = 93) -> Path:
    """One ``save_pretrained`` pipeline folder from the separately trained parts, with the sampling
    defaults its model was measured with and its clip length (saved in model_index.json)."""
    from ..models.checkpoints import read_config, transformer_class
    from ..models.text import load_text_encoder
    from ..models.vae import WFVAE
    from ..pipelines import OpenSoraInpaintPipeline
    from ..schedulers import build_scheduler
    from ..utils.files import atomic_directory

    model = _rebuilt(transformer_class(read_config(Path(transformer))), transformer)
    encoder, tokenizer = load_text_encoder(str(text_encoder))
    pipe = OpenSoraInpaintPipeline(model, _rebuilt(WFVAE, vae), encoder, tokenizer, build_scheduler(sample_method),
                                   default_guidance_scale=guidance_scale, default_num_inference_steps=num_inference_steps,
                                   task_guidance_scales=task_guidance_scales, default_num_frames=num_frames)
    with atomic_directory(out) as staging:
        pipe.save_pretrained(staging)
    return Path(out)


# per motion set, the directions the demo's i2v, transition and continuation examples take
EXAMPLE_DIRECTIONS = {
    "axis": [("i2v", ("left", "right")), ("transition", ("up", "down")), ("continuation", ("left", "right", "up", "down"))],
    "diagonal": [("i2v", ("up-right", "up-left")), ("transition", ("down-right", "down-left")),
                 ("continuation", ("up-right", "up-left", "down-right", "down-left"))],
}


def write_examples(out: str | Path, seed: int = 3, frames: int = 17, size: int = 64,
                   continuation_frames: int = 5, motions: str = "axis") -> Path:
    """The conditioning inputs ``soraplan demo`` ships: held-out scenes (a seed the model never saw),
    one moving sideways for i2v, one moving vertically for the transition, one for continuation; with
    ``motions="diagonal"``, the same tasks moving diagonally (the demo adapter's examples)."""
    import random

    from PIL import Image

    from ..data.video_io import write_video
    from ..utils.files import atomic_directory
    from .world import random_scene, render

    wanted = EXAMPLE_DIRECTIONS[motions]
    examples, index = [], 0
    with atomic_directory(out) as staging:
        for task, directions in wanted:
            while True:
                scene = random_scene(random.Random(seed * 1_000_003 + index), frames, size, motions=motions)
                index += 1
                if scene.direction in directions:
                    break
            video = render(scene, frames, size)
            if task == "i2v":
                names = ["i2v_first.png"]
                Image.fromarray(video[0]).save(staging / names[0])
            elif task == "transition":
                names = ["transition_first.png", "transition_last.png"]
                Image.fromarray(video[0]).save(staging / names[0])
                Image.fromarray(video[-1]).save(staging / names[1])
            else:
                names = ["continuation_start.mp4"]
                write_video(staging / names[0], video[:continuation_frames], fps=8, crf=0)
            examples.append({"name": f"example_{len(examples) + 1}", "task": task, "conditions": names,
                             "prompt": scene.caption})
        (staging / "examples.json").write_text(json.dumps(examples, indent=1) + "\n")
    return Path(out)


def main(argv=None) -> int:
    from .text_encoder import save_text_encoder

    parser = argparse.ArgumentParser(prog="python -m soraplan.demo.recipe", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("text-encoder", help="write the seeded byte-level T5 encoder folder")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p = steps.add_parser("latent-stats", help="write per-channel latent shift/scale into a VAE folder's config")
    p.add_argument("vae_dir")
    p.add_argument("video_dir")
    p.add_argument("--clips", type=int, default=256)
    p = steps.add_parser("assemble", help="write one pipeline folder (model_index.json) from the parts")
    p.add_argument("out")
    p.add_argument("--transformer", required=True)
    p.add_argument("--vae", required=True)
    p.add_argument("--text_encoder", required=True)
    p.add_argument("--guidance_scale", type=float, default=7.5, help="the pipeline's default guidance scale")
    p.add_argument("--num_sampling_steps", type=int, default=100, help="the pipeline's default step count")
    p.add_argument("--task_guidance", action="append", default=[], metavar="TASK=G",
                   help="a mask type's own default guidance scale (e.g. transition=2); repeatable")
    p.add_argument("--num_frames", type=int, default=93,
                   help="the clip length the model was trained on (longer videos are chained segments of it)")
    p = steps.add_parser("examples", help="write the demo's conditioning images, video and prompts")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--motions", choices=tuple(EXAMPLE_DIRECTIONS), default="axis",
                   help="diagonal: examples of the motion the demo adapter teaches")
    args = parser.parse_args(argv)
    if args.step == "text-encoder":
        print(f"wrote {save_text_encoder(args.out, args.seed)}")
    elif args.step == "latent-stats":
        shift, scale = write_latent_stats(args.vae_dir, args.video_dir, args.clips)
        print("shift " + " ".join(f"{v:.4f}" for v in shift))
        print("scale " + " ".join(f"{v:.4f}" for v in scale))
    elif args.step == "examples":
        print(f"wrote {write_examples(args.out, args.seed, motions=args.motions)}")
    else:
        task_guidance = {}
        for item in args.task_guidance:
            task, sep, scale = item.partition("=")
            try:
                task_guidance[task] = float(scale)
            except ValueError:
                parser.error(f"--task_guidance takes TASK=SCALE, got {item!r}")
        folder = assemble_pipeline(args.out, args.transformer, args.vae, args.text_encoder,
                                   guidance_scale=args.guidance_scale, num_inference_steps=args.num_sampling_steps,
                                   task_guidance_scales=task_guidance, num_frames=args.num_frames)
        print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
