"""I2V (inpaint) transformer training (``soraplan train``), built on accelerate.

One step, per sample: pick a mask type from the mask config, mask the clip (given frames kept, others
-1), optionally noise the given frames; VAE-encode clip and masked clip (posterior samples, normalised);
compress the mask; noise the clip latent at a uniform timestep of a DDPM schedule (v-prediction and
zero-terminal-SNR by default); the transformer sees [noisy | masked latent | mask] and is trained with
MSE on the v (or epsilon) target over all latent frames, as the reference.

Reproducibility: every random draw of a step comes from generators seeded with (seed, step, position
of the sample in the global batch), and the data order from (seed, epoch). So a run resumed from a
checkpoint continues exactly as the uninterrupted run, and N processes with batch b take the same step
as one process with batch N·b.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from accelerate.utils import set_seed
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.annotations import DataConfig, load_training_samples
from ..data.video_dataset import BucketBatchSampler, VideoTextDataset, collate
from ..masks import MaskType, add_condition_noise, compress_mask, mask_video, normalize_mask_ratios, sample_mask_type, temporal_mask
from ..models.checkpoints import init_inpaint_from_t2v, read_state_dict
from ..models.configs import build_inpaint
from ..models.text import encode_text, load_text_encoder
from ..models.transformer import OpenSoraInpaint
from ..models.vae import WFVAE
from ..parallel import enable_sequence_parallel
from .checkpoints import resolve_resume, save_checkpoint
from .runtime import (DEFAULT_COLLECTIVE_TIMEOUT, build_and_train, check_same_flags, gathered_parameters,
                      hidden_from_transformers, make_accelerator, zero_stage)

logger = logging.getLogger(__name__)

REGISTRY = {"OpenSoraInpaint_v1_3-2B/122": "2B/122", "OpenSoraInpaint_v1_3-tiny": "tiny"}
# flags that may differ between the nodes of one run: where node-local things live, how data is read
NODE_LOCAL_FLAGS = ("dataloader_num_workers", "text_encoder_device", "text_cache_dir", "cache_dir")
PRECISIONS = {"no": "no", "fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass(kw_only=True)
class TrainConfig(DataConfig):
    """Every flag of ``soraplan train``: the data flags (inherited) and the training ones."""

    data: str
    output_dir: str
    model: str
    ae_path: str
    text_encoder_name_1: str
    pretrained: str | None = None
    mask_config: str | None = None
    cfg: float = 0.1
    default_text_ratio: float = 0.5
    clean_video_captions: bool = False  # the reference cleans image captions only (soraplan.data.captions)
    min_clear_ratio: float = 0.0
    max_clear_ratio: float = 1.0
    add_noise_to_condition: bool = False
    # the given frames of this share of the samples whose mask type is in condition_roundtrip_masks are
    # first passed through the VAE (encode, decode): what a long video's later segments are given
    condition_roundtrip: float = 0.0
    condition_roundtrip_masks: str = "continuation"
    # this share of the batches are anchored continuations: every sample a continuation with its video's
    # first frame before the clip as one extra given latent frame (the layout of an anchored long video's
    # segments with a model trained for it, OpenSoraInpaint's reference_frame)
    continuation_anchor: float = 0.0
    model_max_length: int = 512
    text_cache_dir: str | None = None  # text-encoder states saved per caption, reused on later steps and runs
    text_encoder_device: str | None = None  # "cpu": keep the (frozen) text encoder off the accelerator
    dataloader_num_workers: int = 0
    # optimisation
    train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-15
    max_grad_norm: float = 1.0
    max_train_steps: int | None = None
    num_train_epochs: int = 1
    gradient_checkpointing: bool = False
    mixed_precision: str = "no"
    seed: int = 1234
    prediction_type: str = "v_prediction"
    rescale_betas_zero_snr: bool = True
    # LoRA: --lora_rank > 0 trains a peft adapter on the frozen transformer (soraplan.training.lora)
    lora_rank: int = 0
    lora_alpha: float | None = None  # default: the rank (scale 1)
    lora_target_modules: str = "to_q,to_k,to_v,to_out.0"
    lora_dropout: float = 0.0
    # EMA, checkpoints, logging
    use_ema: bool = False
    ema_decay: float = 0.9999
    ema_start_step: int = 0
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    log_steps: int = 1
    report_to: str | None = None
    # validation
    validation_data: str | None = None
    validation_steps: int = 0
    validation_prompt: str | None = None
    validation_images: str | None = None
    validation_num_frames: int | None = None
    validation_sampling_steps: int = 20
    # sequence parallel (--sp_size, inherited): groups of sp_size consecutive ranks share samples
    train_sp_batch_size: int = 1  # accepted; each SP group trains on train_batch_size samples per step
    # several processes: how long one waits for the others in a collective before it reports them lost
    collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT
    # model config when --model is a registry name
    interpolation_scale_t: float = 1.0
    interpolation_scale_h: float = 1.0
    interpolation_scale_w: float = 1.0
    sparse1d: bool = True
    sparse_n: int = 4
    allow_tf32: bool = False
    # accepted so the reference's command lines run; they change nothing here
    cache_dir: str | None = None  # nothing is downloaded
    dataset: str = "inpaint"
    ae: str = "WFVAEModel_D8_4x8x8"
    sample_rate: int = 1  # frames are sampled by --train_fps
    group_data: bool = False  # batches always hold one bucket
    use_decord: bool = False  # PyAV decodes
    trained_data_global_step: int = 0  # resume restores the data position itself

    def data_config(self) -> DataConfig:
        return DataConfig(**{f.name: getattr(self, f.name) for f in fields(DataConfig)})


def load_mask_config(path: str | None, config: TrainConfig) -> tuple[dict, dict, float, float]:
    """(video ratios, image ratios, min_clear_ratio, max_clear_ratio) from a mask_config.yaml."""
    values = {}
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"mask config {path} does not exist")
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"mask config {path} must be a mapping")
    video = normalize_mask_ratios(values.get("mask_type_ratio_dict_video", {"random_temporal": 1.0}))
    image = normalize_mask_ratios(values.get("mask_type_ratio_dict_image", {"t2iv": 1.0, "clear": 1.0}))
    low = float(values.get("min_clear_ratio", config.min_clear_ratio))
    high = float(values.get("max_clear_ratio", config.max_clear_ratio))
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"mask config: need 0 <= min_clear_ratio <= max_clear_ratio <= 1, got {low}, {high}")
    return video, image, low, high


def build_transformer(config: TrainConfig) -> OpenSoraInpaint:
    """--model: a registry name or a folder with config.json; --pretrained: T2V or I2V weights."""
    # the layout the model is trained on, in its config from the start (model/ and model_ema/ save it;
    # set later, diffusers' from_config would take it for an unset default)
    layout = {"reference_frame": True} if config.continuation_anchor > 0 else {}
    if config.model in REGISTRY:
        model = build_inpaint(REGISTRY[config.model], interpolation_scale_t=config.interpolation_scale_t,
                              interpolation_scale_h=config.interpolation_scale_h,
                              interpolation_scale_w=config.interpolation_scale_w, sparse1d=config.sparse1d,
                              sparse_n=config.sparse_n, **layout)
    else:
        folder = Path(config.model)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"--model {config.model}: not a registry name ({', '.join(REGISTRY)}) nor a folder with config.json")
        with open(folder / "config.json") as f:
            fields = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
        fields.setdefault("vae_scale_factor_t", 4)
        model = OpenSoraInpaint.from_config({**fields, **layout})
    if config.pretrained:
        report = init_inpaint_from_t2v(model, read_state_dict(config.pretrained))
        logger.info("initialised from %s: %d tensors copied", config.pretrained, len(report.copied))
    return model


@dataclass
class EncodedBatch:
    """One step's inputs before noising (see I2VTrainer.encode_batch)."""

    latents: torch.Tensor  # (B, 8, T', h, w) clean, normalised
    condition: torch.Tensor  # (B, 12, T', h, w): masked-video latent (8) | compressed mask (4)
    noise: torch.Tensor  # (B, 8, T', h, w)
    generators: list  # one torch.Generator per sample
    text: torch.Tensor  # (B, L, C)
    text_mask: torch.Tensor  # (B, L)
    mask_types: list = field(default_factory=list)  # the MaskType drawn for each sample


def step_generators(seed: int, step: int, positions: list[int], device) -> list[torch.Generator]:
    """One generator per sample, seeded by (seed, step, position in the global batch)."""
    return [torch.Generator(device).manual_seed(hash((seed, step, p)) & 0x7FFFFFFF) for p in positions]


def drawn_samples(mask_types: list, rngs: list, kinds: set, p: float) -> list[int]:
    """Positions of the samples whose mask type is one of ``kinds``, each kept with probability ``p``
    from its own stream (one draw per sample of those kinds, none for the others)."""
    return [i for i, (kind, rng) in enumerate(zip(mask_types, rngs)) if kind in kinds and rng.random() < p]


def per_sample_randn(shape, generators, device, dtype=torch.float32) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generators])


class I2VTrainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.output_dir = Path(config.output_dir)
        if config.mixed_precision not in PRECISIONS:
            raise ValueError(f"--mixed_precision must be one of {', '.join(PRECISIONS)}")
        if config.prediction_type not in ("v_prediction", "epsilon"):
            raise ValueError(f"--prediction_type must be v_prediction or epsilon, got {config.prediction_type!r}")
        if config.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
        self.accelerator = make_accelerator(PRECISIONS[config.mixed_precision], config.collective_timeout,
                                            gradient_accumulation_steps=config.gradient_accumulation_steps,
                                            log_with=config.report_to, project_dir=str(self.output_dir))
        accelerator = self.accelerator
        check_same_flags(accelerator, asdict(config), local=NODE_LOCAL_FLAGS)
        device = accelerator.device
        self.mask_ratios_video, self.mask_ratios_image, self.min_clear, self.max_clear = load_mask_config(config.mask_config, config)
        if not 0.0 <= config.condition_roundtrip <= 1.0:
            raise ValueError(f"--condition_roundtrip is a probability, got {config.condition_roundtrip}; give a value in [0, 1]")
        try:
            self.roundtrip_masks = {MaskType.parse(name.strip()) for name in config.condition_roundtrip_masks.split(",")
                                    if name.strip()}
        except ValueError as error:
            raise ValueError(f"--condition_roundtrip_masks: {error}") from None
        if not 0.0 <= config.continuation_anchor <= 1.0:
            raise ValueError(f"--continuation_anchor is a probability, got {config.continuation_anchor}; give a value in [0, 1]")

        world, batch = accelerator.num_processes, config.train_batch_size
        if config.sp_size < 1 or world % config.sp_size:
            raise ValueError(f"--sp_size {config.sp_size} must divide the number of processes ({world})")
        self.sp_group = self._sequence_parallel_group(config.sp_size)
        replicas = world // config.sp_size  # data-parallel degree
        self.dp_rank = accelerator.process_index // config.sp_size
        data_config = config.data_config()
        selection = load_training_samples(config.data, data_config, min_bucket_size=batch * replicas, seed=config.seed)
        if not selection.samples:
            reasons = ", ".join(f"{r}: {n}" for r, n in selection.dropped.most_common()) or "none"
            raise ValueError(f"no training sample survives the data filters (dropped: {reasons}); "
                             "see `soraplan data check`")
        self.dataset = VideoTextDataset(selection.samples, config.cfg, config.default_text_ratio, config.seed,
                                        clean_video_captions=config.clean_video_captions,
                                        keep_chinese=_encoder_is_multilingual(config.text_encoder_name_1),
                                        anchors=config.continuation_anchor > 0)
        if config.continuation_anchor > 0:
            later = sum(s.is_video and s.first_source_frame != s.frame_indices[0] for s in selection.samples)
            if accelerator.is_main_process:
                logger.info("--continuation_anchor: %d of %d samples start after their video's first frame (an "
                            "anchor from earlier in time); the others' anchor is their own first frame",
                            later, len(selection.samples))
                if not later:
                    logger.warning("--continuation_anchor: no sample starts after its video's first frame, so no "
                                   "anchor is from earlier in time: give videos longer than --num_frames at --train_fps")
        self.sampler = BucketBatchSampler([s.bucket for s in selection.samples], batch, replicas, self.dp_rank,
                                          config.seed)
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=collate,
                                 num_workers=config.dataloader_num_workers)
        if len(self.sampler) == 0:
            raise ValueError(f"{len(selection.samples)} samples make no full batch of {batch} x {replicas} data-parallel ranks")
        self.validation = None
        if config.validation_data:
            val = load_training_samples(config.validation_data, data_config, seed=config.seed + 1)
            self.validation = VideoTextDataset(val.samples, cfg=0.0, seed=config.seed + 1)

        self.weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision, torch.float32)
        self.zero3 = zero_stage(accelerator) == 3
        if self.zero3 and config.lora_rank:
            raise ValueError("--lora_rank does not run under ZeRO-3: an adapter's gradients and optimizer state are "
                             "small, so launch it with ZeRO-2 (deepspeed_zero2_config.yaml) or DDP")
        with hidden_from_transformers(accelerator):
            self.vae, self.text_encoder, self.tokenizer = self.load_frozen_models()
        # in the text cache's keys: states cached with another tokenizer (one that misread the captions)
        # are not reused
        self._tokenizer_id = f"{type(self.tokenizer).__name__}:{len(self.tokenizer)}:{self.tokenizer.name_or_path}"
        self.vae.to(device).eval().requires_grad_(False)
        # mT5-XXL's encoder is 10.5 GiB in bf16: on a small GPU it can run on the CPU (each caption once
        # with --text_cache_dir), its states moved to the accelerator
        try:
            text_device = torch.device(config.text_encoder_device) if config.text_encoder_device else device
        except RuntimeError:
            raise ValueError(f"--text_encoder_device {config.text_encoder_device!r} is no device; give e.g. cpu") from None
        self.text_encoder.to(text_device).eval().requires_grad_(False)
        self.noise_scheduler = DDPMScheduler(prediction_type=config.prediction_type,
                                             rescale_betas_zero_snr=config.rescale_betas_zero_snr)

        if config.lora_rank < 0 or not 0 <= config.lora_dropout < 1:
            raise ValueError(f"--lora_rank must be >= 0 (0: train every weight) and --lora_dropout in [0, 1), got "
                             f"{config.lora_rank} and {config.lora_dropout}")
        set_seed(config.seed)  # the same initial weights on every rank and in every run
        with hidden_from_transformers(accelerator):
            model = self.build_model()
            if config.lora_rank:
                from .lora import attach_lora, lora_config

                attach_lora(model, lora_config(config.lora_rank, config.lora_alpha, config.lora_target_modules,
                                               config.lora_dropout))
        if model.config.caption_channels != self.text_encoder.config.d_model:
            raise ValueError(f"the transformer expects {model.config.caption_channels}-dim text states, the text "
                             f"encoder gives {self.text_encoder.config.d_model}")
        if config.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self.ema = None
        if config.use_ema:  # of what trains: every weight, or the adapter's
            whole = {} if config.lora_rank else {"model_cls": OpenSoraInpaint, "model_config": model.config}
            self.ema = EMAModel(trained_parameters(model), decay=config.ema_decay,
                                update_after_step=config.ema_start_step, **whole)
        optimizer = torch.optim.AdamW(trained_parameters(model), lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                                      weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
        steps_per_epoch = math.ceil(len(self.sampler) / config.gradient_accumulation_steps)
        self.max_steps = config.max_train_steps or config.num_train_epochs * steps_per_epoch
        lr_scheduler = get_scheduler(config.lr_scheduler, optimizer,
                                     num_warmup_steps=config.lr_warmup_steps * world,
                                     num_training_steps=self.max_steps * world)
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:  # our sampler's loader is not prepared, so DeepSpeed cannot infer "auto" sizes
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch
            plugin.deepspeed_config["train_batch_size"] = batch * world * config.gradient_accumulation_steps
        self.model, self.optimizer, self.lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
        if self.ema is not None:
            self.ema.to(device)
            accelerator.register_for_checkpointing(self.ema)
        for extra in self.checkpointed_extras():
            accelerator.register_for_checkpointing(extra)
        deepspeed = plugin is not None
        self._save_state_kwargs = {"exclude_frozen_parameters": True} if config.lora_rank and deepspeed else {}
        if config.lora_rank:
            from .lora import register_adapter_checkpointing

            register_adapter_checkpointing(accelerator)
        if config.report_to:
            accelerator.init_trackers("soraplan-train", config={k: v for k, v in asdict(config).items() if v is not None})

        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        resume = resolve_resume(self.output_dir, config.resume_from_checkpoint)
        if resume is not None:
            state = json.loads((resume / "trainer_state.json").read_text())
            check_resume_layout(resume, state.get("layout"), self.layout())
            accelerator.load_state(str(resume / "accelerate_state"),
                                   **({"load_module_strict": False} if self._save_state_kwargs else {}))
            self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
            saved_processes = state.get("layout", {}).get("processes", accelerator.num_processes)
            if saved_processes != accelerator.num_processes:
                self._rescale_schedule()
            logger.info("resumed from %s at step %d", resume, self.step)

    def layout(self) -> dict:
        """How this run is spread over processes, as its checkpoints record it (``check_resume_layout``)."""
        replicas = self.accelerator.num_processes // self.config.sp_size
        return {"processes": self.accelerator.num_processes, "zero_stage": zero_stage(self.accelerator),
                "deepspeed": getattr(self.accelerator.state, "deepspeed_plugin", None) is not None,
                "samples_per_step": self.config.train_batch_size * replicas,
                "gradient_accumulation_steps": self.config.gradient_accumulation_steps}

    def _rescale_schedule(self) -> None:
        """accelerate steps the learning-rate schedule once per process and optimizer step (its length
        is counted the same way), so a checkpoint of N processes resumed by M has the schedule at
        step·N of a schedule M/N times as long: set it to step·M, where the uninterrupted run is."""
        inner = self.lr_scheduler.scheduler
        inner.last_epoch = self.step * self.accelerator.num_processes
        inner._step_count = inner.last_epoch + 1
        for group, lr in zip(inner.optimizer.param_groups, inner.get_lr()):
            group["lr"] = lr
        inner._last_lr = [group["lr"] for group in inner.optimizer.param_groups]

    # ----------------------------------------------------------------------------------------------
    # what a trainer built on this one (soraplan.training.distill_trainer) replaces

    def load_frozen_models(self):
        """(VAE, text encoder, tokenizer) in the training's weight dtype, from --ae_path and
        --text_encoder_name_1."""
        vae = WFVAE.from_pretrained(self.config.ae_path, dtype=self.weight_dtype)
        text_encoder, tokenizer = load_text_encoder(self.config.text_encoder_name_1, self.weight_dtype)
        return vae, text_encoder, tokenizer

    def build_model(self) -> OpenSoraInpaint:
        """The transformer to train (fp32 master weights), from --model and --pretrained."""
        return build_transformer(self.config)

    def checkpointed_extras(self) -> list:
        """More objects with state_dict/load_state_dict that a checkpoint holds and a resume restores."""
        return []

    def after_optimizer_step(self) -> None:
        """Whatever follows the weights after each optimizer step: the EMA."""
        if self.ema is not None:
            with self._whole_weights(), hidden_from_transformers(self.accelerator):
                self.ema.step(trained_parameters(self._unwrapped()))

    def sampling_pipeline(self, model):
        """(pipeline, steps) for the validation videos: the release's sampler on the model in training."""
        from ..pipelines import OpenSoraInpaintPipeline
        from ..schedulers import build_scheduler

        config = self.config
        scheduler = build_scheduler("EulerAncestralDiscrete", config.prediction_type, config.rescale_betas_zero_snr)
        pipe = OpenSoraInpaintPipeline(model, self.vae, self.text_encoder, self.tokenizer, scheduler)
        return pipe, config.validation_sampling_steps

    # ----------------------------------------------------------------------------------------------

    def _sequence_parallel_group(self, sp_size: int):
        """The UlyssesGroup of this rank (consecutive ranks), or None without sequence parallelism."""
        if sp_size == 1:
            return None
        import torch.distributed as dist

        from ..parallel import UlyssesGroup

        mine = None
        for start in range(0, self.accelerator.num_processes, sp_size):
            group = dist.new_group(list(range(start, start + sp_size)))  # every rank creates every group
            if start <= self.accelerator.process_index < start + sp_size:
                mine = UlyssesGroup(group)
        return mine

    def _unwrapped(self) -> OpenSoraInpaint:
        return self.accelerator.unwrap_model(self.model)

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.config.report_to:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    @torch.no_grad()
    def prepare_inputs(self, batch: dict, step: int, positions: list[int]):
        """Clip -> (model input (B, 20, T', h, w), target, timesteps, text, text mask), all seeded per sample."""
        encoded = self.encode_batch(batch, step, positions)
        latents, noise, generators = encoded.latents, encoded.noise, encoded.generators
        device = latents.device
        timesteps = torch.stack([torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (), generator=g, device=device)
                                 for g in generators])
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        model_in = torch.cat([noisy, encoded.condition], dim=1)
        return model_in, target, timesteps, encoded.text, encoded.text_mask

    @torch.no_grad()
    def encode_batch(self, batch: dict, step: int, positions: list[int]) -> "EncodedBatch":
        """Clip -> clean latents, conditioning (masked-video latent and compressed mask), noise and text:
        everything of a step but the timestep. Every draw comes from the per-sample generators, which
        the caller may go on drawing from (timesteps, guidance scales)."""
        device = self.accelerator.device
        video = batch["video"].to(device, self.vae.dtype)  # (B, 3, T, H, W)
        generators = step_generators(self.config.seed, step, positions, device)
        rngs = [random.Random(hash((self.config.seed, step, p, 1))) for p in positions]  # ints only: str hashes vary by process
        frames = video.shape[2]
        ratios = self.mask_ratios_video if frames > 1 else self.mask_ratios_image
        anchored = frames > 1 and self.is_anchored_batch(batch, step, positions)
        masks, mask_types = [], []
        for rng in rngs:
            drawn = sample_mask_type(ratios, rng)  # drawn either way: the clip's mask is the one it would have
            mask_types.append(MaskType.continuation if anchored else drawn)
            masks.append(temporal_mask(mask_types[-1], frames, self.min_clear, self.max_clear, rng))
        mask = torch.stack(masks).to(device)  # (B, T) 1 = generate
        masked = mask_video(self.roundtrip_given_frames(video, mask_types, rngs), mask)
        if self.config.add_noise_to_condition:
            noisy_condition = []
            for i, (rng, g) in enumerate(zip(rngs, generators)):
                if rng.random() < 0.05:  # as the reference: some samples keep clean conditions
                    noisy_condition.append(masked[i:i + 1])
                else:
                    noisy_condition.append(add_condition_noise(masked[i:i + 1], mask[i:i + 1], -3.0, 0.5, g))
            masked = torch.cat(noisy_condition)

        def encode(x):
            posterior = self.vae.encode(x)
            eps = per_sample_randn(posterior.mean.shape[1:], generators, device, posterior.mean.dtype)
            return self.vae.normalize_latents(posterior.mean + posterior.std * eps)

        latents, masked_latents = encode(video), encode(masked)
        latent_mask = compress_mask(mask.to(latents.dtype), video.shape[-2], video.shape[-1])
        if anchored:  # the anchor alone (one frame: nothing of it reaches the clip's latents), given, first
            anchor = batch["anchor"].to(device, video.dtype)[:, :, None]  # (B, 3, 1, H, W)
            latents = torch.cat([encode(anchor), latents], dim=2)  # (B, 8, T' + 1, h, w)
            masked_latents = torch.cat([encode(anchor), masked_latents], dim=2)
            latent_mask = torch.cat([torch.zeros_like(latent_mask[:, :, :1]), latent_mask], dim=2)
        noise = per_sample_randn(latents.shape[1:], generators, device, latents.dtype)
        text, text_mask = self.text_states(batch["caption"])
        return EncodedBatch(latents, torch.cat([masked_latents, latent_mask], dim=1), noise, generators, text, text_mask,
                            mask_types)

    def is_anchored_batch(self, batch: dict, step: int, positions: list[int]) -> bool:
        """Whether this batch is drawn for --continuation_anchor: one draw per batch (its samples must
        share one latent length), from a stream of (seed, step, first position), so the ranks of a
        sequence-parallel group, which share a batch, agree.

        Why the layout: an anchored long video (``--anchor``) gives every later segment the video's first
        frame as an appearance reference. Put in the clip as its frame 0, WF-VAE's causal temporal layers
        carry it into the next frames (the overlap's) and blur them; encoded alone and placed before the
        clip as its own latent frame it leaves the clip's latents as they are. Clips cut from later in
        longer videos, each given its video's first frame that way, teach the model to take the object's
        look from the reference and the motion from the frames after it."""
        p = self.config.continuation_anchor
        if p <= 0 or batch.get("anchor") is None:  # (validation batches have no anchors: their loss stays comparable)
            return False  # draws nothing: runs without the flag keep their random streams
        return random.Random(hash((self.config.seed, step, positions[0], 2))).random() < p

    @torch.no_grad()
    def roundtrip_given_frames(self, video: torch.Tensor, mask_types: list, rngs: list) -> torch.Tensor:
        """The clip (B, 3, T, H, W) with the samples drawn for --condition_roundtrip replaced by their VAE
        reconstruction (posterior mode, decoded, clamped to [-1, 1]).

        Why: a long video's later segments are continuations given frames the VAE decoded from the
        previous segment, blurred and colour-shifted by the round trip, while training gives clean
        frames; each segment then carries that shift on and adds its own (drift). Given round-tripped
        frames and asked for the clean clip's latents, the model learns to undo the shift instead of
        copying it. Only the conditioning changes: the target latents stay the clean clip's."""
        p = self.config.condition_roundtrip
        if p <= 0:
            return video  # draws nothing: runs without the flag keep their random streams
        chosen = drawn_samples(mask_types, rngs, self.roundtrip_masks, p)
        if not chosen:
            return video
        video = video.clone()
        part = video[chosen]  # (b, 3, T, H, W)
        video[chosen] = self.vae.decode(self.vae.encode(part).mode()).clamp(-1, 1).to(video.dtype)
        return video

    def text_states(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, C) states and (B, L) masks; with --text_cache_dir, each caption is encoded once ever."""
        device, length = self.accelerator.device, self.config.model_max_length
        if not self.config.text_cache_dir:
            return encode_text(self.text_encoder, self.tokenizer, captions, length, device)
        from safetensors.torch import load_file, save_file

        states, masks = [], []
        for caption in captions:
            key = hashlib.sha1(f"{self.config.text_encoder_name_1}|{self._tokenizer_id}|{length}|{caption}".encode()).hexdigest()
            path = Path(self.config.text_cache_dir) / f"{key}.safetensors"
            if path.is_file():
                cached = load_file(str(path))
            else:
                state, mask = encode_text(self.text_encoder, self.tokenizer, [caption], length, device)
                cached = {"states": state[0].cpu().contiguous(), "mask": mask[0].cpu()}
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
                save_file(cached, str(partial))
                os.replace(partial, path)  # ranks may race on a caption: each write is whole
            states.append(cached["states"])
            masks.append(cached["mask"])
        dtype = next(self.text_encoder.parameters()).dtype
        return torch.stack(states).to(device, dtype), torch.stack(masks).to(device)

    def loss(self, batch: dict, step: int, positions: list[int], sequence_parallel: bool = True) -> torch.Tensor:
        model_in, target, timesteps, text, text_mask = self.prepare_inputs(batch, step, positions)
        dtype = next(self.model.parameters()).dtype
        use_sp = sequence_parallel and self.sp_group is not None and model_in.shape[2] > 1
        parallel = self.sp_group if use_sp else None
        enable_sequence_parallel(self._unwrapped(), parallel)  # images (1 latent frame) never split
        if parallel is not None:  # this rank's frames; the mean over ranks is the full loss
            part = parallel.local_slice(model_in.shape[2])
            model_in, target = model_in[:, :, part], target[:, :, part]
        pred = self.model(model_in.to(dtype), timesteps, text[:, None].to(dtype), encoder_attention_mask=text_mask[:, None]).sample
        return F.mse_loss(pred.float(), target.float())

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """Mean loss over the validation samples at fixed noise, timesteps and masks (comparable over time)."""
        if self.validation is None:
            return None
        self.model.eval()
        losses = []
        for index in range(len(self.validation)):
            item = self.validation[index]
            batch = {"video": item["video"][None], "caption": [item["caption"]]}
            losses.append(self.loss(batch, step=-1, positions=[index], sequence_parallel=False).item())
        self.model.train()
        return sum(losses) / len(losses)

    def save(self) -> Path:
        def write_models(folder: Path) -> None:
            for name, write in self.trained_parts():
                write(folder / name)
            state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                     "layout": self.layout()}
            (folder / "trainer_state.json").write_text(json.dumps(state))
            (folder / "trainer_config.json").write_text(json.dumps(asdict(self.config), indent=2))

        return save_checkpoint(self.accelerator, self.output_dir, self.step, write_models,
                               self.config.checkpoints_total_limit, gather=self._whole_weights,
                               **self._save_state_kwargs)

    def _whole_weights(self):
        """Every rank enters: the trained model's weights whole for writing them (ZeRO-3 splits them)."""
        return gathered_parameters(self.accelerator, self._unwrapped())

    def trained_parts(self) -> list[tuple[str, object]]:
        """What the run trained, as (folder name, writer(folder)): model/ and model_ema/ (from_pretrained
        folders), or with --lora_rank lora/ and lora_ema/ (diffusers' LoRA files, nothing of the base)."""
        model = self._unwrapped()
        if not self.config.lora_rank:
            parts = [("model", model.save_pretrained)]
            if self.ema is not None:
                parts.append(("model_ema", lambda folder: self.ema.save_pretrained(str(folder))))
            return parts
        from .lora import save_adapter

        parts = [("lora", lambda folder: save_adapter(model, folder))]
        if self.ema is not None:
            parts.append(("lora_ema", lambda folder: save_adapter(model, folder, self.ema_adapter_state())))
        return parts

    def ema_adapter_state(self) -> dict:
        """The adapter's weights with the EMA's values (the model's own are left as they are)."""
        from .lora import adapter_state

        model = self._unwrapped()
        parameters = trained_parameters(model)
        self.ema.store(parameters)
        self.ema.copy_to(parameters)
        try:
            return {k: v.clone() for k, v in adapter_state(model).items()}
        finally:
            self.ema.restore(parameters)

    def validate_with_samples(self) -> None:
        """A video through the I2V pipeline from the validation prompt (and images), written by the main
        process."""
        config = self.config
        # under ZeRO-3 every rank takes part in each forward pass (each holds a part of the weights), so
        # every rank samples the same video; otherwise the main process alone
        if not config.validation_prompt or not (self.accelerator.is_main_process or self.zero3):
            return
        from ..data.video_io import write_video

        model = self._unwrapped()
        pipe, steps = self.sampling_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        conditions = [p.strip() for p in config.validation_images.split(",")] if config.validation_images else None
        model.eval()
        video = pipe(config.validation_prompt, conditions=conditions, num_frames=config.validation_num_frames or config.num_frames,
                     height=config.max_height, width=config.max_width, num_inference_steps=steps,
                     max_sequence_length=config.model_max_length, generator=torch.Generator().manual_seed(config.seed)).videos[0]
        model.train()
        if self.accelerator.is_main_process:
            write_video(self.output_dir / "validation" / f"step-{self.step}.mp4", video)

    def train(self) -> dict:
        config, accelerator = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        batch = config.train_batch_size
        positions = [self.dp_rank * batch + i for i in range(batch)]  # the same within an SP group
        bar = tqdm(total=self.max_steps, initial=self.step, desc="train", disable=not accelerator.is_main_process)
        started, last = time.time(), {}
        if self.step == 0 and self.validation is not None:  # the baseline the run is judged against
            self._log({"step": 0, "validation_loss": self.validation_loss()})
        try:  # the bar's line ends before any error is printed
            validated_at = -1
            while self.step < self.max_steps:
                self.sampler.set_epoch(self.epoch, start_batch=self.batch_in_epoch)
                self.dataset.set_epoch(self.epoch)
                for batch_data in self.loader:
                    if self.step >= self.max_steps:
                        break
                    micro = self.batch_in_epoch % config.gradient_accumulation_steps
                    with accelerator.accumulate(self.model):
                        loss = self.loss(batch_data, self.step * config.gradient_accumulation_steps + micro, positions)
                        accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            accelerator.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
                        self.optimizer.step()
                        self.lr_scheduler.step()
                        self.optimizer.zero_grad()
                    self.batch_in_epoch += 1
                    if not accelerator.sync_gradients:
                        continue
                    self.step += 1
                    self.after_optimizer_step()
                    bar.update(1)
                    mean_loss = accelerator.gather(loss.detach()[None]).mean().item()
                    if not math.isfinite(mean_loss):
                        raise FloatingPointError(f"non-finite loss at step {self.step}")
                    last = {"step": self.step, "train_loss": mean_loss, "lr": self.lr_scheduler.get_last_lr()[0]}
                    if self.step % config.log_steps == 0 or self.step == 1:
                        self._log(last)
                        bar.set_postfix(loss=f"{mean_loss:.4g}")
                    if config.validation_steps and self.step % config.validation_steps == 0:
                        val = self.validation_loss()
                        if val is not None:
                            self._log({"step": self.step, "validation_loss": val})
                            validated_at = self.step
                        self.validate_with_samples()
                    if config.checkpointing_steps and self.step % config.checkpointing_steps == 0:
                        self.save()
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        finally:
            bar.close()
        result = {**last, "seconds": round(time.time() - started, 1)}
        val = self.validation_loss()
        if val is not None:
            result["validation_loss"] = val
            if validated_at != self.step:
                self._log({"step": self.step, "validation_loss": val})
        self._save_final()
        accelerator.end_training()
        return result

    def _save_final(self) -> None:
        """<output_dir>/model (and model_ema): the trained transformer, ready for from_pretrained; with
        --lora_rank <output_dir>/lora (and lora_ema): the adapter, ready for --lora / load_lora_weights."""
        from ..utils.files import atomic_directory

        self.accelerator.wait_for_everyone()
        with self._whole_weights():
            if self.accelerator.is_main_process:
                for name, write in self.trained_parts():
                    with atomic_directory(self.output_dir / name) as folder:
                        write(folder)
        self.accelerator.wait_for_everyone()


def trained_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a run trains: all of them, or with a LoRA adapter the adapter's."""
    return [p for p in model.parameters() if p.requires_grad]


def _encoder_is_multilingual(path: str) -> bool:
    """mT5/UMT5 read Chinese: caption clean-up keeps CJK ideographs for them (the reference's rule)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).model_type in ("mt5", "umt5")
    except (OSError, ValueError):
        return "mt5" in str(path).lower()


def check_resume_layout(checkpoint: Path, saved: dict | None, now: dict) -> None:
    """A checkpoint resumes under another layout when the training stays the same: the same samples per
    optimizer step (per-process batch x data-parallel processes) and gradient accumulation, and the
    same kind of checkpoint. accelerate's (DDP, one process) holds whole states, so any number of
    processes reads it; DeepSpeed's holds one optimizer shard per process of its own ZeRO stage, so it
    needs the same stage and number of processes (DeepSpeed converts between them with its universal
    checkpoints, which this trainer does not read). Anything else is a ValueError saying what differs
    and how to go on (a checkpoint of an older soraplan records no layout and is not checked)."""
    if not saved:
        return

    def kind(layout: dict) -> str:
        return f"DeepSpeed ZeRO-{layout['zero_stage']}" if layout["deepspeed"] else "accelerate (DDP or one process)"

    restart = (f"resume with the layout that wrote it, or start a new run from its weights with --pretrained "
               f"{checkpoint / 'model'} (the optimizer starts afresh)")
    if saved["deepspeed"] != now["deepspeed"] or saved["zero_stage"] != now["zero_stage"]:
        raise ValueError(f"{checkpoint.name} was written by {kind(saved)} and this launch runs {kind(now)}: their "
                         f"checkpoints do not load into each other; {restart}")
    for key, what in (("samples_per_step", "samples per optimizer step (--train_batch_size x data-parallel "
                                           "processes)"),
                      ("gradient_accumulation_steps", "--gradient_accumulation_steps")):
        if saved[key] != now[key]:
            raise ValueError(f"{checkpoint.name} was trained with {saved[key]} {what} and this launch has {now[key]}: "
                             f"a resume continues the same training, so keep it at {saved[key]}, or {restart}")
    if now["deepspeed"] and saved["processes"] != now["processes"]:
        raise ValueError(f"{checkpoint.name} holds DeepSpeed shards for {saved['processes']} processes and this launch "
                         f"has {now['processes']}: {restart}")


def train(config: TrainConfig, trainer_class=None) -> dict:
    """Build the trainer (``trainer_class``, default I2VTrainer) and train; with several processes a peer
    that dies or goes silent is reported as one ``PeerFailure`` line (see ``reported_peer_failures``)."""
    return build_and_train(trainer_class or I2VTrainer, config, config.output_dir)
