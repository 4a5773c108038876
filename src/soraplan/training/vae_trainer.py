"""WF-VAE trainer (``soraplan train-vae``), built on accelerate.

One process or many (``accelerate launch`` / ``torchrun``): data parallel, optional bf16/fp16 mixed
precision. Generator and discriminator steps alternate once the discriminator starts (as in the
reference recipe). Every ``save_ckpt_step`` steps a checkpoint folder is written atomically with the
model as a ``save_pretrained`` folder (plus the EMA copy) and the full accelerate state for resuming;
held-out PSNR is measured every ``eval_steps`` and at the end. Metrics go to ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.clips import VideoClipDataset
from ..models.vae import WFVAE
from ..utils.files import atomic_directory
from .checkpoints import checkpoint_step, resolve_resume, save_checkpoint
from .discriminator import PatchDiscriminator3D
from .runtime import DEFAULT_COLLECTIVE_TIMEOUT, build_and_train, check_same_flags, make_accelerator
from .vae_losses import VAELossWeights, discriminator_loss, generator_loss

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class VAETrainConfig:
    video_path: str
    ckpt_dir: str
    model_config: str | None = None
    pretrained_model_name_or_path: str | None = None
    eval_video_path: str | None = None
    num_frames: int = 17
    resolution: int = 256
    sample_rate: int = 1
    batch_size: int = 1
    eval_batch_size: int = 1
    eval_num_frames: int | None = None
    eval_subset_size: int = 100
    lr: float = 1e-5
    weight_decay: float = 1e-4
    epochs: int = 10
    max_steps: int | None = None
    clip_grad_norm: float = 1e5
    mix_precision: str = "fp32"
    seed: int = 1234
    log_steps: int = 5
    save_ckpt_step: int = 1000
    checkpoints_total_limit: int | None = None
    eval_steps: int = 1000
    resume_from_checkpoint: str | None = None
    dataset_num_worker: int = 0
    ema: bool = False
    ema_decay: float = 0.999
    freeze_encoder: bool = False
    loss_type: str = "l1"
    kl_weight: float = 1e-6
    wavelet_loss: bool = False
    wavelet_weight: float = 0.1
    lpips_weights: str | None = None
    perceptual_weight: float = 1.0
    disc_start: int | None = None  # None: no discriminator
    disc_weight: float = 0.5
    disc_lr: float | None = None
    disc_ndf: int = 64
    disc_num_layers: int = 4
    collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT  # several processes: see soraplan.training.runtime


def build_vae(config: VAETrainConfig) -> WFVAE:
    if config.pretrained_model_name_or_path:
        return WFVAE.from_pretrained(config.pretrained_model_name_or_path)
    if config.model_config:
        with open(config.model_config) as f:
            fields = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
        return WFVAE.from_config(fields)
    raise ValueError("give --model_config (a WF-VAE config.json to train from scratch) or --pretrained_model_name_or_path")


def psnr(video: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR in dB of two [-1, 1] videos (B, 3, T, H, W), measured on [0, 1]."""
    mse = (((video + 1) / 2).clamp(0, 1) - ((recon + 1) / 2).clamp(0, 1)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def evaluate_psnr(vae: WFVAE, loader: DataLoader, accelerator: Accelerator, max_clips: int) -> float:
    vae.eval()
    scores = []
    for video in loader:
        recon, _ = vae(video)
        scores.append(accelerator.gather_for_metrics(psnr(video, recon)))
        if sum(len(s) for s in scores) >= max_clips:
            break
    vae.train()
    return torch.cat(scores)[:max_clips].mean().item()


class VAETrainer:
    """Owns models, optimisers and data for one run; ``train()`` runs it to ``max_steps``."""

    def __init__(self, config: VAETrainConfig):
        self.config = config
        self.output_dir = Path(config.ckpt_dir)
        if config.mix_precision not in PRECISIONS:
            raise ValueError(f"--mix_precision must be one of {', '.join(PRECISIONS)}, got {config.mix_precision!r}")
        self.accelerator = make_accelerator(PRECISIONS[config.mix_precision], config.collective_timeout)
        if getattr(self.accelerator.state, "deepspeed_plugin", None) is not None:
            raise ValueError("this launch uses DeepSpeed, which the VAE trainer does not run under (it trains two "
                             "models, the VAE and its discriminator, and a WF-VAE fits every GPU whole): launch it with DDP "
                             "(scripts/accelerate_configs/ddp_config.yaml, multi_node_ddp_config.yaml or torchrun)")
        check_same_flags(self.accelerator, asdict(config))
        set_seed(config.seed, device_specific=True)
        self.weights = VAELossWeights(config.kl_weight, config.wavelet_weight, config.perceptual_weight,
                                      config.disc_weight, config.loss_type)

        vae = build_vae(config)
        self.train_set = VideoClipDataset(config.video_path, config.num_frames, config.resolution, config.sample_rate)
        train_loader = DataLoader(self.train_set, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.dataset_num_worker)
        if len(train_loader) == 0:
            raise ValueError(f"{len(self.train_set)} training videos is fewer than one batch of {config.batch_size}")
        eval_loader = None
        if config.eval_video_path:
            eval_set = VideoClipDataset(config.eval_video_path, config.eval_num_frames or config.num_frames,
                                        config.resolution, config.sample_rate, random_window=False)
            eval_loader = DataLoader(eval_set, batch_size=config.eval_batch_size, shuffle=False)

        if config.freeze_encoder:
            vae.encoder.requires_grad_(False)
        trainable = [p for p in vae.parameters() if p.requires_grad]
        gen_opt = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.ema = EMAModel(trainable, decay=config.ema_decay) if config.ema else None

        self.use_disc = config.disc_start is not None
        disc = disc_opt = None
        if self.use_disc:
            disc = PatchDiscriminator3D(3, config.disc_ndf, config.disc_num_layers)
            disc_opt = torch.optim.AdamW(disc.parameters(), lr=config.disc_lr or config.lr, weight_decay=0.01)

        self.perceptual = None
        if config.lpips_weights:
            from .lpips import LPIPS

            self.perceptual = LPIPS.from_file(config.lpips_weights).eval().requires_grad_(False)

        prepared = self.accelerator.prepare(vae, gen_opt, train_loader, *([eval_loader] if eval_loader else []))
        self.vae, self.gen_opt, self.train_loader = prepared[:3]
        self.eval_loader = prepared[3] if eval_loader else None
        if self.use_disc:
            self.disc, self.disc_opt = self.accelerator.prepare(disc, disc_opt)
        if self.ema is not None:
            self.ema.to(self.accelerator.device)
            self.accelerator.register_for_checkpointing(self.ema)
        if self.perceptual is not None:
            self.perceptual.to(self.accelerator.device)

        steps_per_epoch = len(self.train_loader)
        self.max_steps = config.max_steps or config.epochs * steps_per_epoch
        self.step = 0
        resume = resolve_resume(self.output_dir, config.resume_from_checkpoint)
        if resume is not None:
            self.accelerator.load_state(str(resume / "accelerate_state"))
            self.step = checkpoint_step(resume)
            logger.info("resumed from %s at step %d", resume, self.step)

    # ----------------------------------------------------------------------------------------------

    def _unwrapped(self) -> WFVAE:
        return self.accelerator.unwrap_model(self.vae)

    def _log(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _disc_turn(self) -> bool:
        return self.use_disc and self.step >= self.config.disc_start and self.step % 2 == 1

    def train_step(self, video: torch.Tensor) -> dict[str, float]:
        vae, accelerator = self.vae, self.accelerator
        if self._disc_turn():
            with accelerator.autocast():
                with torch.no_grad():
                    recon, _ = vae(video, sample_posterior=True)
                loss, log = discriminator_loss(self.disc, video, recon)
            self.disc_opt.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(self.disc.parameters(), 1.0)
            self.disc_opt.step()
            return log
        with accelerator.autocast():
            recon, posterior, coeffs = vae(video, sample_posterior=True, return_wavelet_coeffs=True)
        gan_active = self.use_disc and self.step >= self.config.disc_start
        if gan_active:
            self.disc.requires_grad_(False)
        with accelerator.autocast():
            loss, log = generator_loss(
                video, recon, posterior, self.weights,
                coeffs=coeffs if self.config.wavelet_loss else None,
                perceptual=self.perceptual,
                discriminator=self.disc if gan_active else None,
                last_layer=self._unwrapped().get_last_layer() if gan_active else None,
            )
        self.gen_opt.zero_grad()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(vae.parameters(), self.config.clip_grad_norm)
        self.gen_opt.step()
        if gan_active:
            self.disc.requires_grad_(True)
        if self.ema is not None:
            self.ema.step([p for p in self._unwrapped().parameters() if p.requires_grad])
        return log

    def save_checkpoint(self) -> Path:
        """checkpoint-<step>/ with vae/ (and vae_ema/) as save_pretrained folders + accelerate_state/."""

        def write_models(folder: Path) -> None:
            self._unwrapped().save_pretrained(folder / "vae")
            if self.ema is not None:
                self._save_ema_copy(folder / "vae_ema")
            (folder / "trainer_config.json").write_text(json.dumps(asdict(self.config), indent=2))

        return save_checkpoint(self.accelerator, self.output_dir, self.step, write_models,
                               self.config.checkpoints_total_limit)

    @contextlib.contextmanager
    def _ema_weights(self):
        """The EMA weights in the model for the duration (a no-op without --ema); trained weights after."""
        if self.ema is None:
            yield
            return
        params = [p for p in self._unwrapped().parameters() if p.requires_grad]
        self.ema.store(params)
        self.ema.copy_to(params)
        try:
            yield
        finally:
            self.ema.restore(params)

    def _save_ema_copy(self, folder: Path) -> None:
        with self._ema_weights():
            self._unwrapped().save_pretrained(folder)

    def _evaluate(self) -> float | None:
        if self.eval_loader is None:
            return None
        with self._ema_weights():
            return evaluate_psnr(self.vae, self.eval_loader, self.accelerator, self.config.eval_subset_size)

    def train(self) -> dict:
        config, accelerator = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.vae.train()
        bar = tqdm(total=self.max_steps, initial=self.step, desc="train-vae", disable=not accelerator.is_main_process)
        last_log, started = {}, time.time()
        while self.step < self.max_steps:
            for video in self.train_loader:
                if self.step >= self.max_steps:
                    break
                log = self.train_step(video)
                self.step += 1
                bar.update(1)
                if not all(math.isfinite(v) for v in log.values()):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {log}")
                last_log = log
                if self.step % config.log_steps == 0 or self.step == 1:
                    self._log({"step": self.step, **log})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in log.items() if k in ("loss", "disc_loss")})
                if config.eval_steps and self.step % config.eval_steps == 0 and self.step < self.max_steps:
                    score = self._evaluate()
                    if score is not None:
                        self._log({"step": self.step, "eval_psnr": score})
                if config.save_ckpt_step and self.step % config.save_ckpt_step == 0:
                    self.save_checkpoint()
        bar.close()
        result = {"step": self.step, "seconds": round(time.time() - started, 1), **last_log}
        score = self._evaluate()
        if score is not None:
            result["eval_psnr"] = score
            self._log({"step": self.step, "eval_psnr": score})
        self._save_final()
        return result

    def _save_final(self) -> None:
        """<ckpt_dir>/vae: the trained model (EMA weights when --ema), ready for from_pretrained."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        with atomic_directory(self.output_dir / "vae") as folder:
            if self.ema is not None:
                self._save_ema_copy(folder)
            else:
                self._unwrapped().save_pretrained(folder)


def train_vae(config: VAETrainConfig) -> dict:
    """Build the trainer and train; a peer process lost is one ``PeerFailure`` (soraplan.training.runtime)."""
    return build_and_train(VAETrainer, config, config.ckpt_dir)
