"""Image-to-video sampling with the Open-Sora Plan v1.3 inpaint model.

    prompt -> T5/mT5 states;  images / video -> conditioning video + mask (pipelines.conditioning)
    masked video -> WF-VAE latent (normalised);  mask -> 4-channel latent mask
    noise (B, 8, T', h, w) · init_noise_sigma
    for t: transformer([latent | masked latent | mask], t, text) with CFG -> scheduler step
    latent -> WF-VAE decode -> uint8 frames (B, T, H, W, 3)

Differences from the reference pipeline, on purpose: the conditioning latent is the posterior mean
(the reference draws a random sample), any number of keyframes at any frame indices, ``noise_strength``
on the given frames, a ``generator`` for every random draw (seeded runs repeat exactly), and any dtype.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..masks import MaskType, add_condition_noise, compress_mask
from ..models.text import encode_text
from .conditioning import Conditioning, build_conditioning
from .lora import OpenSoraLoraLoaderMixin


@dataclass
class OpenSoraPipelineOutput(BaseOutput):
    """``videos``: (B, T, H, W, 3) uint8 array (or the latents with ``output_type="latent"``);
    ``given_frames``: indices of the frames taken from the conditioning (the rest were generated);
    ``guidance_scale``: the scale the videos were guided with (the task's default when none was given)."""

    videos: np.ndarray | torch.Tensor
    mask_type: MaskType | None = None
    given_frames: list[int] | None = None
    guidance_scale: float | None = None


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """The guided prediction uncond + scale * (cond - uncond): the one rule the sampler and the
    distillation trainer's teacher share, so a guidance student learns what the pipeline would sample."""
    return uncond + scale * (cond - uncond)


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, sec. 3.4): match the std of the conditional prediction."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * rescaled + (1 - rescale) * guided


class OpenSoraInpaintPipeline(DiffusionPipeline, OpenSoraLoraLoaderMixin):
    """I2V / keyframe interpolation / video continuation / T2V with ``OpenSoraInpaint``; with an
    ``OpenSoraT2V`` transformer it is the plain text-to-video pipeline (no conditioning inputs).
    LoRA adapters: ``load_lora_weights`` / ``set_adapters`` / ``fuse_lora`` / ``unload_lora_weights``
    (soraplan.pipelines.lora)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler, default_guidance_scale: float = 7.5,
                 default_num_inference_steps: int = 100, distilled_guidance_scale: float | None = None,
                 distilled_guidance_range: list[float] | tuple[float, float] | None = None,
                 task_guidance_scales: dict[str, float] | None = None, default_num_frames: int = 93):
        """``default_guidance_scale`` / ``default_num_inference_steps``: what a call without
        ``guidance_scale`` / ``num_inference_steps`` uses. They are saved in model_index.json, so a
        pipeline folder carries the sampling settings its model was made for (the release's 7.5 and
        100; a small model may need less guidance, a distilled one fewer steps).
        ``distilled_guidance_scale``: the guidance a distilled student (``soraplan distill``) computes in
        its single pass; classifier-free guidance on top of it is refused (it would guide twice).
        ``distilled_guidance_range``: (low, high) for a student that takes the guidance scale as an input
        (``soraplan distill --guidance_range``, a transformer with ``guidance_embeds``): ``guidance_scale``
        in that range is given to it, one pass a step, and one outside it is refused.
        ``task_guidance_scales``: defaults for some mask types that differ from ``default_guidance_scale``
        (``{"transition": 2}``): a transition is pinned by two given frames, so text guidance there
        mostly pulls the generated frames away from them, and a model may keep its given frames best
        with less of it (measured for the demo model).
        ``default_num_frames``: the clip length the model was trained on (the release's 93); longer
        videos are made as a chain of segments of this length (soraplan.pipelines.long_video)."""
        super().__init__()
        task_guidance_scales = {MaskType.parse(task).value: float(scale)
                                for task, scale in (task_guidance_scales or {}).items()}
        if any(scale < 0 for scale in task_guidance_scales.values()):
            raise ValueError(f"task_guidance_scales must be >= 0, got {task_guidance_scales}")
        self.register_modules(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler)
        self.register_to_config(default_guidance_scale=float(default_guidance_scale),
                                default_num_inference_steps=int(default_num_inference_steps),
                                distilled_guidance_scale=None if distilled_guidance_scale is None
                                else float(distilled_guidance_scale),
                                distilled_guidance_range=None if distilled_guidance_range is None
                                else [float(v) for v in distilled_guidance_range],
                                task_guidance_scales=task_guidance_scales or None,
                                default_num_frames=int(default_num_frames))

    # ----------------------------------------------------------------------------------------------

    @property
    def vae_stride(self) -> tuple[int, int]:
        return 4, 8

    @property
    def takes_conditioning(self) -> bool:
        """True for the inpaint (I2V) transformer, False for the T2V one."""
        from ..models.transformer import OpenSoraInpaint

        return isinstance(getattr(self.transformer, "_orig_mod", self.transformer), OpenSoraInpaint)  # torch.compile'd too

    @property
    def guidance_range(self) -> tuple[float, float] | None:
        """The guidance scales a guidance-embedding student takes (None for every other model)."""
        bounds = getattr(self.config, "distilled_guidance_range", None)
        return None if bounds is None else (float(bounds[0]), float(bounds[1]))

    @property
    def clip_frames(self) -> int:
        """The clip length the model makes in one pass (``default_num_frames``); longer videos are chained."""
        return int(getattr(self.config, "default_num_frames", None) or 93)

    @property
    def takes_reference_frame(self) -> bool:
        """True for a model trained to take an appearance reference as an extra latent frame before
        the clip (``reference``; the transformer's ``reference_frame``, set by ``soraplan train
        --continuation_anchor``)."""
        return bool(getattr(self.transformer.config, "reference_frame", False))

    @property
    def guidance_in_one_pass(self) -> bool:
        """True for a guidance-distilled student: no unconditional pass, whatever the guidance."""
        return getattr(self.config, "distilled_guidance_scale", None) is not None or self.guidance_range is not None

    def enable_sequence_parallel(self, group) -> None:
        """Split every video's frames over the ranks of ``group`` (a soraplan.parallel.UlyssesGroup;
        None switches it off). Every rank must call the pipeline with the same arguments; each gets
        the whole result."""
        from ..parallel import enable_sequence_parallel

        enable_sequence_parallel(self.transformer, group)
        self._sequence_parallel = group

    def enable_cfg_parallel(self, group) -> None:
        """Classifier-free guidance over the two processes of ``group`` (a torch.distributed process
        group; None switches it off): rank 0 of it evaluates the unconditional half, rank 1 the
        conditional one, and they exchange predictions every step. Combines with sequence parallelism
        (each half then split over its own sequence-parallel group). Both ranks get the whole result."""
        if group is not None and torch.distributed.get_world_size(group) != 2:
            raise ValueError(f"CFG parallel needs a group of 2 processes, got {torch.distributed.get_world_size(group)}")
        self._cfg_parallel = group

    def enable_step_cache(self, threshold: float | None) -> None:
        """Skip transformer evaluations whose input changed less than ``threshold`` (relative L1,
        accumulated) since the last full one, reusing its residual (soraplan.acceleration.step_cache).
        None or 0 switches it off. ``step_cache_stats`` tells how many evaluations the last call ran."""
        from ..acceleration import disable_step_cache, enable_step_cache

        if threshold:
            enable_step_cache(self.transformer, threshold)
        else:
            disable_step_cache(self.transformer)

    @property
    def step_cache_stats(self):
        """Computed / skipped transformer calls of the last run with the step cache on (else None)."""
        from ..acceleration import get_step_cache

        hook = get_step_cache(self.transformer)
        return None if hook is None else hook.stats

    def encode_prompt(self, prompts: list[str], negative: list[str] | None, max_sequence_length: int, device):
        """(states, mask) for [negative; positive] when ``negative`` is given, else positive only."""
        texts = (negative or []) + prompts
        states, mask = encode_text(self.text_encoder, self.tokenizer, texts, max_sequence_length, device)
        return states.to(self.transformer.dtype), mask

    def encode_conditioning(self, conditioning: list[Conditioning], noise_strength: float, generator, device):
        """Masked videos -> normalised VAE latents (posterior mean) and compressed masks."""
        dtype = self.vae.dtype
        video = torch.stack([c.video for c in conditioning]).to(device, dtype)  # (B, 3, T, H, W)
        mask = torch.stack([c.mask for c in conditioning]).to(device)  # (B, T)
        if noise_strength > 0:
            video = add_condition_noise(video, mask, float(np.log(noise_strength)), 0.01, generator)
        latents = self.vae.normalize_latents(self.vae.encode(video).mode())
        latent_mask = compress_mask(mask.to(dtype), video.shape[-2], video.shape[-1], *self.vae_stride)
        return latents, latent_mask

    @property
    def task_guidance_scales(self) -> dict[str, float]:
        """The mask types whose default guidance differs from ``default_guidance_scale``, with theirs."""
        return dict(getattr(self.config, "task_guidance_scales", None) or {})

    def sampling_settings(self, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                          task: str | MaskType | None = None) -> tuple[int, float]:
        """(steps, guidance) of a call: the given values, else the pipeline's defaults (for ``task``,
        a mask type, its own default guidance when the pipeline has one)."""
        config = self.config
        steps = getattr(config, "default_num_inference_steps", 100) if num_inference_steps is None else num_inference_steps
        if guidance_scale is None:
            task = MaskType.parse(task).value if task is not None else None
            guidance_scale = self.task_guidance_scales.get(task, getattr(config, "default_guidance_scale", 7.5))
        return int(steps), float(guidance_scale)

    def describe_guidance(self, guidance_scale: float | None = None) -> str:
        """What a run guides with, for a log line: "guidance 3" or "guidance 3 (transition 2)"."""
        _, guidance = self.sampling_settings(None, guidance_scale)
        overrides = "" if guidance_scale is not None else ", ".join(
            f"{task} {scale:g}" for task, scale in self.task_guidance_scales.items())
        return f"guidance {guidance:g}" + (f" ({overrides})" if overrides else "")

    def check_inputs(self, num_frames, height, width, guidance_scale, num_inference_steps, noise_strength):
        problems = []
        if num_frames < 1 or (num_frames - 1) % 4:
            problems.append(f"num_frames {num_frames} is not 4k+1 (e.g. 1, 29, 45, 61, 93)")
        if height % 16 or width % 16 or height <= 0 or width <= 0:
            problems.append(f"height/width must be positive multiples of 16 (32 recommended), got {height}x{width}")
        if num_inference_steps < 1:
            problems.append("num_inference_steps must be at least 1")
        if guidance_scale < 0:
            problems.append("guidance_scale must be >= 0")
        distilled, bounds = getattr(self.config, "distilled_guidance_scale", None), self.guidance_range
        if bounds is not None and not bounds[0] <= guidance_scale <= bounds[1]:
            problems.append(f"this model takes guidance scales from {bounds[0]:g} to {bounds[1]:g} (the range it was "
                            f"distilled on, one pass a step); guidance_scale {guidance_scale:g} lies outside it")
        elif bounds is None and distilled is not None and guidance_scale > 1:
            problems.append(f"this model is guidance-distilled (guidance {distilled:g} is built into its single "
                            f"pass); guidance_scale {guidance_scale:g} would guide twice: leave it out or give 1")
        if not 0 <= noise_strength <= 1:
            problems.append(f"noise_strength must lie in [0, 1], got {noise_strength}")
        if problems:
            raise ValueError("; ".join(problems))

    # ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        conditions: list | None = None,
        condition_indices: list[int] | None = None,
        mask_type: str | MaskType | None = None,
        negative_prompt: str | list[str] | None = None,
        num_frames: int = 93,
        height: int = 352,
        width: int = 640,
        crop_for_hw: bool = False,
        max_hxw: int = 236544,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        guidance_rescale: float = 0.0,
        num_samples_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        noise_strength: float = 0.0,
        max_sequence_length: int | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        reference=None,
    ):
        """Generate ``num_samples_per_prompt`` videos for each prompt, all with the same conditioning.

        ``conditions``: images (1 -> i2v, 2 -> first/last transition, N with ``condition_indices`` ->
        keyframes) or one video (continuation); None -> text-to-video. ``mask_type`` overrides the
        default type. Images and videos are paths, PIL images or uint8 arrays. ``num_inference_steps``
        and ``guidance_scale`` default to the pipeline's (``default_num_inference_steps``,
        ``default_guidance_scale``).

        ``reference``: an appearance reference image for a model trained to take one
        (``takes_reference_frame``: ``soraplan train --continuation_anchor``). It is encoded alone and
        given as one extra latent frame before the clip (mask 0), sampled with it, and dropped before
        decoding: the video is the ``num_frames`` clip, the reference reaches none of its latents
        through the VAE. An anchored long video gives every later segment the video's first frame so.
        """
        given_guidance = guidance_scale
        num_inference_steps, guidance_scale = self.sampling_settings(num_inference_steps, guidance_scale)
        self.check_inputs(num_frames, height, width, guidance_scale, num_inference_steps, noise_strength)
        if not self.takes_conditioning and (conditions or mask_type not in (None, "t2iv", MaskType.t2iv)):
            raise ValueError("this is a text-to-video (T2V) model: it takes no conditioning images, video or mask "
                             "type; use an I2V (inpaint) checkpoint for those")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        device = self._execution_device
        rng = random.Random(generator.initial_seed() if generator is not None else None)
        conditioning = build_conditioning(conditions or [], num_frames, height, width, indices=condition_indices,
                                          mask_type=mask_type, crop_for_hw=crop_for_hw, max_hxw=max_hxw, rng=rng)
        if given_guidance is None and conditioning.mask_type.value in self.task_guidance_scales:
            _, guidance_scale = self.sampling_settings(num_inference_steps, None, conditioning.mask_type)
            self.check_inputs(num_frames, height, width, guidance_scale, num_inference_steps, noise_strength)
        batch = len(prompts) * num_samples_per_prompt
        real_h, real_w = conditioning.video.shape[-2:]
        if reference is not None:
            if not self.takes_reference_frame:
                raise ValueError("this model was not trained with a reference frame (soraplan train "
                                 "--continuation_anchor); give the image as a keyframe instead")
            if num_frames == 1:
                raise ValueError("a reference frame goes before a video's frames: num_frames must be more than 1")
            # a one-frame clip of the image, given, at the clip's size: encoded alone below
            reference = build_conditioning([reference], 1, real_h, real_w, mask_type=MaskType.i2v, crop_for_hw=True)

        use_cfg = guidance_scale > 1.0 and self.guidance_range is None
        negatives = None
        if use_cfg:
            negatives = [negative_prompt or ""] * len(prompts) if not isinstance(negative_prompt, list) else negative_prompt
            if len(negatives) != len(prompts):
                raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
        if max_sequence_length is None:  # the release's 512, or less when the tokenizer says so (the demo model)
            max_sequence_length = min(512, getattr(self.tokenizer, "model_max_length", None) or 512)
        text, text_mask = self.encode_prompt(prompts, negatives, max_sequence_length, device)
        text = text.repeat_interleave(num_samples_per_prompt, dim=0)  # sample k of prompt i at i·n + k
        text_mask = text_mask.repeat_interleave(num_samples_per_prompt, dim=0)

        # CFG parallel: this process evaluates one half ([negative; positive] order) of every step
        cfg_group = getattr(self, "_cfg_parallel", None) if use_cfg else None
        halves = 2 if use_cfg and cfg_group is None else 1
        if cfg_group is not None:
            text, text_mask = (x.chunk(2)[torch.distributed.get_rank(cfg_group)] for x in (text, text_mask))

        dtype = self.transformer.dtype
        temporal, spatial = self.vae_stride
        latent_size = ((num_frames - 1) // temporal + 1, real_h // spatial, real_w // spatial)
        cond = None  # inpaint model: [masked-video latent | latent mask] appended to every input
        if self.takes_conditioning:
            cond_latents, latent_mask = self.encode_conditioning([conditioning], noise_strength, generator, device)
            if reference is not None:  # one more latent frame, first: the reference alone, given
                reference_latent, reference_mask = self.encode_conditioning([reference], 0.0, generator, device)
                cond_latents = torch.cat([reference_latent, cond_latents], dim=2)
                latent_mask = torch.cat([reference_mask, latent_mask], dim=2)
                latent_size = (latent_size[0] + 1, *latent_size[1:])
            cond = torch.cat([cond_latents, latent_mask], dim=1).to(dtype)
            cond = cond.expand(batch * halves, -1, -1, -1, -1)

        try:
            self.scheduler.set_timesteps(num_inference_steps, device=device)
        except ValueError as error:
            raise ValueError(f"{type(self.scheduler).__name__} cannot sample in {num_inference_steps} steps ({error})") from None
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        shape = (batch, self.transformer.config.in_channels, *latent_size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        latents = latents * getattr(self.scheduler, "init_noise_sigma", 1.0)

        # sequence parallel: frames padded to a multiple of the ranks (padding masked out), each rank
        # runs the transformer on its slice; latents and scheduler stay whole on every rank
        parallel = getattr(self, "_sequence_parallel", None)
        frames = latent_size[0]
        padded = -(-frames // parallel.world) * parallel.world if parallel is not None else frames
        part = parallel.local_slice(padded) if parallel is not None else slice(None)
        video_mask = None
        if padded > frames:
            video_mask = torch.ones(batch * halves, padded, *latent_size[1:], device=device, dtype=dtype)
            video_mask[:, frames:] = 0
            video_mask = video_mask[:, part]
        if cond is not None:
            cond = _pad_frames(cond, padded)[:, :, part]

        from ..acceleration import get_step_cache
        from ..parallel.ulysses import gather_cat

        step_cache = get_step_cache(self.transformer)
        if step_cache is not None:
            split_over = []  # the process groups this video is split over
            if parallel is not None:
                split_over.append(parallel.group)  # None here is the default group, still a split
            if cfg_group is not None:
                split_over.append(cfg_group)
            step_cache.begin(len(self.scheduler.timesteps), split_over)
        # a guidance-embedding student takes the scale as an input, one value per video in the batch
        embedded_guidance = {} if self.guidance_range is None else {
            "guidance": torch.full((text.shape[0],), guidance_scale, device=device)}

        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = torch.cat([latents] * halves)
            if hasattr(self.scheduler, "scale_model_input"):
                model_in = self.scheduler.scale_model_input(model_in, t)
            model_in = _pad_frames(model_in.to(dtype), padded)[:, :, part]
            if cond is not None:
                model_in = torch.cat([model_in, cond], dim=1)
            timestep = t.expand(model_in.shape[0]).to(dtype) if torch.is_tensor(t) else torch.full((model_in.shape[0],), t, dtype=dtype, device=device)
            pred = self.transformer(model_in, timestep, text[:, None], attention_mask=video_mask,
                                    encoder_attention_mask=text_mask[:, None], **embedded_guidance).sample
            if parallel is not None:
                pred = parallel.gather(pred, dim=2)[:, :, :frames]
            if cfg_group is not None:
                pred = gather_cat(pred, 0, cfg_group)  # [uncond; cond]
            pred = pred.float()
            if use_cfg:
                uncond, cond_pred = pred.chunk(2)
                pred = classifier_free_guidance(uncond, cond_pred, guidance_scale)
                if guidance_rescale > 0:
                    pred = rescale_guidance(pred, cond_pred, guidance_rescale)
            latents = self.scheduler.step(pred, t, latents, return_dict=False, **step_kwargs)[0]

        self.maybe_free_model_hooks()
        if reference is not None:
            latents = latents[:, :, 1:]  # the clip's latents
        if output_type == "latent":
            videos = latents
        else:
            decoded = self.vae.decode(self.vae.denormalize_latents(latents.to(self.vae.dtype)))
            decoded = decoded[:, :, :num_frames, :real_h, :real_w].float()
            frames = ((decoded / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)  # (B, 3, T, H, W)
            videos = frames.permute(0, 2, 3, 4, 1).contiguous().cpu()
            videos = videos.numpy() if output_type == "np" else videos
        if not return_dict:
            return (videos,)
        given = (conditioning.mask < 0.5).nonzero().flatten().tolist()
        return OpenSoraPipelineOutput(videos=videos, mask_type=conditioning.mask_type, given_frames=given,
                                      guidance_scale=guidance_scale)


def _pad_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Zero-pad (B, C, T, h, w) at the end of T to ``frames``."""
    if x.shape[2] >= frames:
        return x
    return torch.cat([x, x.new_zeros(*x.shape[:2], frames - x.shape[2], *x.shape[3:])], dim=2)


def load_pipeline(model_path: str, ae_path: str | None = None, text_encoder_path: str | None = None,
                  scheduler=None, torch_dtype: torch.dtype = torch.float32,
                  model_type: str | None = None) -> OpenSoraInpaintPipeline:
    """A pipeline from a ``save_pretrained`` pipeline folder (model_index.json), or from the release's
    separate folders: the transformer, the WF-VAE (``ae_path``) and the text encoder.

    ``model_type`` ("inpaint"/"i2v" or "t2v"), when given, must match the checkpoint's transformer.
    """
    from pathlib import Path

    from ..models.checkpoints import read_config, transformer_class
    from ..models.text import load_text_encoder
    from ..models.transformer import OpenSoraInpaint
    from ..models.vae import WFVAE

    folder = Path(model_path)
    is_pipeline = (folder / "model_index.json").is_file()
    transformer_folder = folder / "transformer" if is_pipeline else folder
    if not (transformer_folder / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is neither a pipeline folder (model_index.json) nor a transformer folder (config.json)")
    cls = transformer_class(read_config(transformer_folder))
    if model_type is not None:
        wanted_inpaint = model_type in ("inpaint", "i2v")
        if wanted_inpaint != issubclass(cls, OpenSoraInpaint):
            kind = "an I2V (inpaint)" if issubclass(cls, OpenSoraInpaint) else "a T2V"
            other = "inpaint" if issubclass(cls, OpenSoraInpaint) else "t2v"
            raise ValueError(f"{model_path} holds {kind} transformer, not {model_type}: use --model_type {other}")
    if is_pipeline:
        pipe = OpenSoraInpaintPipeline.from_pretrained(folder, dtype=torch_dtype)
        if scheduler is not None:
            pipe.scheduler = scheduler
        return pipe
    if ae_path is None or text_encoder_path is None:
        raise ValueError("a transformer folder needs --ae_path (WF-VAE folder) and --text_encoder_name_1 (T5/mT5 folder)")
    transformer = cls.from_pretrained(folder, dtype=torch_dtype)
    vae = WFVAE.from_pretrained(ae_path, dtype=torch_dtype)
    text_encoder, tokenizer = load_text_encoder(text_encoder_path, dtype=torch_dtype)
    from ..schedulers import build_scheduler

    return OpenSoraInpaintPipeline(transformer, vae, text_encoder, tokenizer, scheduler or build_scheduler())
