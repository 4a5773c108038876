"""Few-step and guidance-free students of an I2V teacher (``soraplan distill``), on the I2V trainer.

Everything but the loss is ``soraplan train``'s (soraplan.training.i2v_trainer): data, buckets, the
mask curriculum, per-sample seeded draws, EMA, atomic checkpoints, exact resume, DDP / DeepSpeed. The
student starts as a copy of the teacher; the teacher stays frozen in the training's weight dtype.

Two methods:

* ``guidance`` (guidance distillation): at a uniform timestep the student, in one pass, predicts what
  the teacher predicts with classifier-free guidance at ``--guidance_scale`` (two passes). It samples
  with the teacher's sampler and steps, at half the evaluations.

Without ``--guidance_scale`` each example is guided at its teacher's default for the mask type it was
drawn with (a pipeline's ``task_guidance_scales``, e.g. transitions at 2 beside 3 for the rest): the
student sees the mask in its input, so one fixed-scale student learns each task's own guidance.
* ``lcm`` (latent consistency distillation, Luo et al. 2023, with guidance folded in as in that
  paper): the teacher's guided prediction takes one DDIM step on a grid of ``--teacher_steps``
  timesteps, from ``x_t`` to ``x_s`` (``s = t - 1000 / teacher_steps``); the student's consistency
  function at ``(x_t, t)`` is pulled towards a slowly moving copy of itself (the target network, an
  EMA with ``--target_ema_decay``) at ``(x_s, s)``. The consistency function is the one diffusers'
  LCMScheduler samples with (its boundary scalings ``c_skip``/``c_out``), so the student samples with
  that scheduler in ``--student_steps`` steps, one evaluation each.

``--given_frames_weight`` adds to lcm's loss a term anchoring the student's clean estimate of the latent
frames that hold given frames to the training clip's own latents (the consistency loss alone never
corrects what the student's few jumps lose of them); ``--given_frames_from_noise`` also applies it to
the estimate from pure noise at the last training timestep, the one jump a one-step sampler makes (the
drawn grid timestep is that one in only 1 of ``--teacher_steps`` draws); ``--student_init`` starts the student from an
earlier student instead of the teacher, so that term can be a short second stage.

Why LCD for the step distillation: it trains from data clips (no teacher samples to generate first,
which at 200 evaluations per clip would cost more than the training on a CPU), reaches 4 steps in one
run (progressive distillation needs a run per halving), needs one extra network (the target) rather
than DMD's trained fake-score network, and diffusers ships its sampler. The unconditional branch of
the teacher keeps the masked-video latent and the mask and drops only the text (the empty caption).

The output folder holds, besides checkpoints, ``pipeline/``: the teacher's pipeline with the student
transformer (its EMA weights with --use_ema), the student's scheduler and its defaults (steps,
guidance 1, and ``distilled_guidance_scale``), ready for ``soraplan sample --model_path``.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..pipelines.inpaint import classifier_free_guidance
from .i2v_trainer import I2VTrainer, TrainConfig, train
from .runtime import hidden_from_transformers

logger = logging.getLogger(__name__)

METHODS = ("lcm", "guidance")


@dataclass(kw_only=True)
class DistillConfig(TrainConfig):
    """Every flag of ``soraplan distill``: those of ``soraplan train`` plus the distillation's. The
    model flags default to the teacher's: a pipeline folder brings its VAE and text encoder."""

    teacher: str
    model: str | None = None  # the student's architecture: the teacher's
    ae_path: str | None = None
    text_encoder_name_1: str | None = None
    method: str = "lcm"
    guidance_scale: float | None = None  # the guidance built into the student; default: the teacher's, per task
    guidance_range: str | None = None  # "LOW,HIGH": the student takes the scale as an input (a new embedding)
    teacher_steps: int = 40  # the DDIM grid the teacher's solver walks (lcm)
    student_steps: int = 4  # the student's default sampling steps (lcm)
    target_ema_decay: float = 0.95  # lcm's target network; 0: the student itself, without gradient
    huber_c: float = 0.001  # pseudo-Huber loss (lcm); 0: mean squared error
    given_frames_weight: float = 0.0  # lcm: weight of a term pulling given latent frames to the clip's own; 0: off
    given_frames_from_noise: bool = False  # lcm: that term also on the estimate from pure noise (t = 999)
    student_init: str | None = None  # start the student from these weights (e.g. an earlier student), not the teacher's
    cfg: float = 0.0  # caption dropout: the student always learns the guided prediction
    learning_rate: float = 1e-5

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.teacher_steps < 1 or 1000 % self.teacher_steps:
            raise ValueError(f"--teacher_steps {self.teacher_steps} must divide the 1000 training timesteps "
                             "(e.g. 25, 50, 100)")
        if self.student_steps < 1 or (self.method == "lcm" and self.teacher_steps % self.student_steps):
            divisors = ", ".join(str(d) for d in range(1, self.teacher_steps + 1) if self.teacher_steps % d == 0)
            raise ValueError(f"--student_steps {self.student_steps} does not divide the teacher's grid of "
                             f"--teacher_steps {self.teacher_steps}: pick one of {divisors}, or another "
                             "--teacher_steps (a divisor of 1000: 40 serves 2, 4 and 8 steps)")
        if self.guidance_scale is not None and self.guidance_scale < 1:
            raise ValueError(f"--guidance_scale must be at least 1 (1: no guidance), got {self.guidance_scale}")
        bounds = self.guidance_bounds  # checks the text
        if bounds is not None and self.guidance_scale is not None and not bounds[0] <= self.guidance_scale <= bounds[1]:
            raise ValueError(f"--guidance_scale {self.guidance_scale:g} (the student's default) lies outside "
                             f"--guidance_range {self.guidance_range}")
        if self.given_frames_weight < 0 or (self.given_frames_weight and self.method != "lcm"):
            raise ValueError(f"--given_frames_weight must be >= 0 and is a term of --method lcm's loss, got "
                             f"{self.given_frames_weight:g} with --method {self.method}")
        if self.given_frames_from_noise and not self.given_frames_weight:
            raise ValueError("--given_frames_from_noise applies the --given_frames_weight term at the first "
                             "sampling timestep too: give --given_frames_weight > 0")
        if not 0 <= self.target_ema_decay < 1:
            raise ValueError(f"--target_ema_decay must lie in [0, 1), got {self.target_ema_decay}")
        if self.lora_rank and self.guidance_range is not None:
            raise ValueError("--guidance_range needs a full-weight student (its new guidance embedding is not part "
                             "of a LoRA adapter): drop --lora_rank")
        if self.sp_size != 1:
            raise ValueError("soraplan distill does not run sequence parallel (--sp_size): use data parallel "
                             "processes (torchrun / accelerate launch) instead")
        super().__post_init__()  # the data flags

    @property
    def guidance_bounds(self) -> tuple[float, float] | None:
        """--guidance_range as (low, high), or None for a fixed-scale student."""
        if self.guidance_range is None:
            return None
        try:
            low, high = (float(v) for v in self.guidance_range.split(","))
        except ValueError:
            raise ValueError(f"--guidance_range takes two numbers LOW,HIGH (e.g. 1,8), got "
                             f"{self.guidance_range!r}") from None
        if not 1 <= low < high:
            raise ValueError(f"--guidance_range {self.guidance_range}: need 1 <= LOW < HIGH (1: no guidance)")
        return low, high


def student_scheduler(teacher_scheduler, config: DistillConfig):
    """The scheduler the student samples with: the teacher's noise schedule, and for lcm diffusers'
    LCMScheduler on the same timestep grid the distillation walked."""
    if config.method == "guidance":
        return copy.deepcopy(teacher_scheduler)
    from diffusers import LCMScheduler

    return LCMScheduler.from_config(teacher_scheduler.config, prediction_type=config.prediction_type,
                                    rescale_betas_zero_snr=config.rescale_betas_zero_snr,
                                    original_inference_steps=config.teacher_steps, clip_sample=False,
                                    set_alpha_to_one=True, steps_offset=0)


class DistillTrainer(I2VTrainer):
    def __init__(self, config: DistillConfig):
        from ..models.checkpoints import read_config, transformer_class
        from ..models.transformer import OpenSoraInpaint
        from ..pipelines import load_pipeline

        teacher_folder = Path(config.teacher)
        transformer_folder = _transformer_folder(config.teacher, "--teacher")
        if not issubclass(transformer_class(read_config(transformer_folder)), OpenSoraInpaint):
            raise ValueError(f"--teacher {config.teacher} is a text-to-video (T2V) model; distillation needs an I2V "
                             "(inpaint) teacher such as LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v")
        self.teacher_pipe = load_pipeline(config.teacher, config.ae_path, config.text_encoder_name_1)
        if (teacher_folder / "model_index.json").is_file():  # what the data set and the text cache key on
            config.text_encoder_name_1 = config.text_encoder_name_1 or str(teacher_folder / "text_encoder")
        if self.teacher_pipe.guidance_in_one_pass:
            raise ValueError(f"--teacher {config.teacher} is itself a guidance-distilled student (one pass a step, "
                             "no unconditional branch to guide with): distil from its teacher instead")
        defaults = self.teacher_pipe.sampling_settings()
        self.guidance_scale = config.guidance_scale if config.guidance_scale is not None else defaults[1]
        # mask type -> the teacher's default scale where it differs from guidance_scale (an explicit
        # --guidance_scale applies to every task, as it does when sampling)
        self.task_guidance = {} if config.guidance_scale is not None else self.teacher_pipe.task_guidance_scales
        self.guidance_bounds = config.guidance_bounds
        if self.guidance_bounds is not None and not self.guidance_bounds[0] <= self.guidance_scale <= self.guidance_bounds[1]:
            raise ValueError(f"the teacher's guidance {self.guidance_scale:g} (the student's default) lies outside "
                             f"--guidance_range {config.guidance_range}: give --guidance_scale inside it")
        self.teacher_default_steps = defaults[0]
        self.student_init = None
        if config.student_init is not None:
            student_config = {**self.teacher_pipe.transformer.config,
                              "guidance_embeds": self.guidance_bounds is not None}
            self.student_init = _student_init_folder(config.student_init, type(self.teacher_pipe.transformer),
                                                     student_config)
        super().__init__(config)
        device = self.accelerator.device
        self.teacher = _cast(self.teacher_pipe.transformer, self.weight_dtype).to(device).eval().requires_grad_(False)
        self.scheduler = student_scheduler(self.teacher_pipe.scheduler, config)
        # the training schedule is the teacher's (v-prediction, zero terminal SNR)
        self.alphas_cumprod = self.noise_scheduler.alphas_cumprod.to(device, torch.float64)
        self._empty_text = None

    # ---- the I2V trainer's hooks ----------------------------------------------------------------

    def load_frozen_models(self):
        pipe = self.teacher_pipe
        return _cast(pipe.vae, self.weight_dtype), _cast(pipe.text_encoder, self.weight_dtype), pipe.tokenizer

    def build_model(self):
        """The student: the teacher's architecture and weights, trainable, in fp32 (with --guidance_range
        also a zero-initialised guidance embedding, so it starts as the teacher); for lcm also the
        target network (a frozen copy that follows the student by EMA)."""
        teacher = self.teacher_pipe.transformer
        if self.guidance_bounds is None:
            student = copy.deepcopy(teacher)
        else:
            student = type(teacher).from_config(teacher.config, guidance_embeds=True)
            missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
            assert not unexpected and all(key.startswith("guidance_embedder.") for key in missing), missing
        if self.student_init is not None:  # continuing an earlier student (checked in __init__)
            from ..models.checkpoints import read_state_dict

            student.load_state_dict(read_state_dict(self.student_init))
        student = student.float().train().requires_grad_(True)
        self.target = None
        if self.config.method == "lcm" and self.config.target_ema_decay > 0:
            self.target = copy.deepcopy(student).to(self.accelerator.device).eval().requires_grad_(False)
        return student

    def checkpointed_extras(self) -> list:
        return [self.target] if self.target is not None else []

    def sampling_pipeline(self, model):
        """The student as it will sample: its scheduler and steps, no classifier-free guidance."""
        from ..pipelines import OpenSoraInpaintPipeline

        steps = self.student_steps
        pipe = OpenSoraInpaintPipeline(model, self.vae, self.text_encoder, self.tokenizer, self.scheduler,
                                       **self.student_guidance(), default_num_inference_steps=steps,
                                       default_num_frames=self.teacher_pipe.clip_frames)
        return pipe, steps

    @property
    def student_steps(self) -> int:
        """The student's default sampling steps: --student_steps for lcm, the teacher's for guidance."""
        return self.config.student_steps if self.config.method == "lcm" else self.teacher_default_steps

    def student_guidance(self) -> dict:
        """The student pipeline's guidance settings: a fixed-scale student samples at guidance 1 (its
        guidance is built in); a guidance-range one at the teacher's scale, given to its embedding."""
        if self.guidance_bounds is None:
            return {"default_guidance_scale": 1.0, "distilled_guidance_scale": self.guidance_scale}
        low, high = self.guidance_bounds
        return {"default_guidance_scale": self.guidance_scale, "distilled_guidance_range": [low, high],
                "task_guidance_scales": {task: scale for task, scale in self.task_guidance.items()
                                         if low <= scale <= high} or None}

    # ---- the loss --------------------------------------------------------------------------------

    def empty_text(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The unconditional branch's text: the empty caption (the sampler's default negative prompt)."""
        if self._empty_text is None:
            self._empty_text = self.text_states([""])
        states, mask = self._empty_text
        return states.expand(batch, -1, -1), mask.expand(batch, -1)

    @torch.no_grad()
    def teacher_guided(self, noisy, condition, timesteps, text, text_mask, scale=None) -> torch.Tensor:
        """The teacher's classifier-free-guided prediction (B, 8, T', h, w), fp32: both branches in one
        batch, the unconditional one with the same image and mask inputs and the empty caption.
        ``scale``: (B,) guidance per example (default: the fixed --guidance_scale)."""
        batch, dtype = noisy.shape[0], self.weight_dtype
        uncond_text, uncond_mask = self.empty_text(batch)
        model_in = torch.cat([noisy, condition], dim=1).repeat(2, 1, 1, 1, 1).to(dtype)
        states = torch.cat([uncond_text, text]).to(dtype)
        masks = torch.cat([uncond_mask, text_mask])
        pred = self.teacher(model_in, timesteps.repeat(2), states[:, None],
                            encoder_attention_mask=masks[:, None]).sample.float()
        uncond, cond = pred.chunk(2)
        scale = self.guidance_scale if scale is None else scale.view(-1, 1, 1, 1, 1)
        return classifier_free_guidance(uncond, cond, scale)

    def student(self, model, noisy, condition, timesteps, text, text_mask, guidance=None) -> torch.Tensor:
        """The student's one pass; ``guidance`` (B,) for a guidance-range student."""
        dtype = next(model.parameters()).dtype
        extra = {} if guidance is None else {"guidance": guidance}
        return model(torch.cat([noisy, condition], dim=1).to(dtype), timesteps, text[:, None].to(dtype),
                     encoder_attention_mask=text_mask[:, None], **extra).sample.float()

    def draw_guidance(self, generators) -> torch.Tensor | None:
        """Per example, a guidance scale uniform over --guidance_range (None for a fixed scale), drawn
        from the example's own generator after its timestep, so a resumed run draws the same."""
        if self.guidance_bounds is None:
            return None
        low, high = self.guidance_bounds
        return torch.stack([low + (high - low) * torch.rand((), generator=g, device=g.device) for g in generators])

    def guidance_of(self, encoded) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(the teacher's scale per example, the student's guidance input), each (B,) or None: a
        guidance-range student is given the scale it is taught at; a fixed-scale one learns its
        teacher's default for each example's mask type (None: guidance_scale for all)."""
        drawn = self.draw_guidance(encoded.generators)
        if drawn is not None:
            return drawn, drawn
        if not self.task_guidance:
            return None, None
        scales = [self.task_guidance.get(kind.value, self.guidance_scale) for kind in encoded.mask_types]
        return torch.tensor(scales, device=encoded.latents.device), None

    def _alpha(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar), sqrt(1 - alpha_bar)) at integer timesteps, shaped (B, 1, 1, 1, 1)."""
        a = self.alphas_cumprod[timesteps].float().view(-1, 1, 1, 1, 1)
        return a.sqrt(), (1 - a).sqrt()

    def x0_of(self, prediction, noisy, timesteps) -> torch.Tensor:
        a, s = self._alpha(timesteps)
        return a * noisy - s * prediction if self.config.prediction_type == "v_prediction" else (noisy - s * prediction) / a

    def eps_of(self, prediction, noisy, timesteps) -> torch.Tensor:
        a, s = self._alpha(timesteps)
        return s * noisy + a * prediction if self.config.prediction_type == "v_prediction" else prediction

    def consistency(self, prediction, noisy, timesteps) -> torch.Tensor:
        """The consistency function LCMScheduler samples with: c_skip(t)·x_t + c_out(t)·x0(x_t, t)."""
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(timesteps.double())
        c_skip, c_out = (c.float().view(-1, 1, 1, 1, 1) for c in (c_skip, c_out))
        return c_skip * noisy + c_out * self.x0_of(prediction, noisy, timesteps)

    def loss(self, batch: dict, step: int, positions: list[int], sequence_parallel: bool = True) -> torch.Tensor:
        config = self.config
        encoded = self.encode_batch(batch, step, positions)
        latents, noise, condition = encoded.latents, encoded.noise, encoded.condition
        text, text_mask = encoded.text, encoded.text_mask
        device = latents.device
        if config.method == "guidance":
            t = torch.stack([torch.randint(0, 1000, (), generator=g, device=device) for g in encoded.generators])
            scale, w = self.guidance_of(encoded)
            noisy = self.noise_scheduler.add_noise(latents, noise, t)
            target = self.teacher_guided(noisy, condition, t, text, text_mask, scale)
            return F.mse_loss(self.student(self.model, noisy, condition, t, text, text_mask, w), target)

        gap = 1000 // config.teacher_steps
        index = torch.stack([torch.randint(0, config.teacher_steps, (), generator=g, device=device)
                             for g in encoded.generators])
        scale, w = self.guidance_of(encoded)
        t = (index + 1) * gap - 1  # the grid LCMScheduler samples on: gap-1, 2·gap-1, ..., 999
        s = (t - gap).clamp_min(0)  # one DDIM step down; 0 at the bottom, where c_skip = 1, c_out = 0
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        with torch.no_grad():
            guided = self.teacher_guided(noisy, condition, t, text, text_mask, scale)
            x0, eps = self.x0_of(guided, noisy, t), self.eps_of(guided, noisy, t)
            a_s, sigma_s = self._alpha(s)
            previous = a_s * x0 + sigma_s * eps  # DDIM (deterministic) from t to s
            target_model = self.target if self.target is not None else self._unwrapped()
            target = self.consistency(self.student(target_model, previous, condition, s, text, text_mask, w),
                                      previous, s)
        if config.given_frames_from_noise:  # one student pass for both: (x_t, t) and (noise, last timestep)
            last = torch.full_like(t, self.alphas_cumprod.shape[0] - 1)
            start = self.noise_scheduler.add_noise(latents, noise, last)  # = noise under zero terminal SNR
            both = self.student(self.model, torch.cat([noisy, start]), condition.repeat(2, 1, 1, 1, 1),
                                torch.cat([t, last]), text.repeat(2, 1, 1), text_mask.repeat(2, 1),
                                None if w is None else w.repeat(2))
            prediction, from_noise = self.consistency(both, torch.cat([noisy, start]), torch.cat([t, last])).chunk(2)
        else:
            prediction = self.consistency(self.student(self.model, noisy, condition, t, text, text_mask, w), noisy, t)
        loss = self.distance(prediction, target).mean()
        if config.given_frames_weight > 0:
            given = self.given_frames_loss(prediction, latents, condition)
            if config.given_frames_from_noise:
                given = given + self.given_frames_loss(from_noise, latents, condition)
            loss = loss + config.given_frames_weight * given
        return loss

    def distance(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Elementwise pseudo-Huber distance (--huber_c), or squared error with --huber_c 0."""
        if self.config.huber_c > 0:
            c = self.config.huber_c
            return torch.sqrt((prediction - target) ** 2 + c * c) - c
        return (prediction - target) ** 2

    def given_frames_loss(self, prediction, latents, condition) -> torch.Tensor:
        """The consistency estimate's distance from the clip's own latents, averaged over the latent frames
        that hold a given (conditioning) frame: the first frame of i2v, the first and last of a
        transition, a continuation's given part. Why: the consistency loss only asks the student to agree
        with itself one teacher step later, so whatever it loses of the given frames along its few jumps
        is never corrected; the data knows the answer there (the given pixels, and for a latent frame
        that mixes given and generated frames, the clip's own), so this term anchors them. (B, 8, T',
        h, w) each; condition is the masked-video latent followed by the compressed mask (1 = generate)."""
        latent_mask = condition[:, latents.shape[1]:]  # (B, 4, T', h, w)
        given = (latent_mask < 0.5).any(dim=1, keepdim=True).to(prediction.dtype)  # (B, 1, T', h, w)
        per_element = self.distance(prediction, latents) * given
        return per_element.sum() / (given.sum() * latents.shape[1]).clamp_min(1)

    def after_optimizer_step(self) -> None:
        """The target network follows the student: target <- d·target + (1 - d)·student."""
        super().after_optimizer_step()
        if self.target is None:
            return
        # under ZeRO-3 the student's weights are whole only while gathered (the target stays whole on
        # every rank: it is never prepared, and each rank runs it on its own samples)
        with torch.no_grad(), self._whole_weights():
            for mine, theirs in zip(self.target.parameters(), self._unwrapped().parameters()):
                mine.lerp_(theirs.detach().to(mine.dtype), 1 - self.config.target_ema_decay)

    # ---- the output ------------------------------------------------------------------------------

    def _save_final(self) -> None:
        """As ``soraplan train`` (model/ and model_ema/, or lora/ and lora_ema/), plus pipeline/: the
        student as a pipeline folder (a LoRA student merged into the teacher's weights)."""
        super()._save_final()
        from ..pipelines import OpenSoraInpaintPipeline
        from ..utils.files import atomic_directory
        from .i2v_trainer import trained_parameters

        config = self.config
        model = self._unwrapped()
        if self.zero3:  # a whole copy of the partitioned student, gathered by every rank, kept by the main one
            with self._whole_weights():
                state = {key: value.clone() for key, value in model.state_dict().items()} \
                    if self.accelerator.is_main_process else None
            if not self.accelerator.is_main_process:
                return
            with hidden_from_transformers(self.accelerator):
                transformer = type(model).from_config(model.config)
            transformer.load_state_dict(state)
        elif not self.accelerator.is_main_process:
            return
        else:
            transformer = copy.deepcopy(model) if self.ema is not None or config.lora_rank else model
        if self.ema is not None:
            self.ema.copy_to(trained_parameters(transformer))
        if config.lora_rank:
            transformer.fuse_lora()
            transformer.unload_lora()
        pipe = self.teacher_pipe
        steps = self.student_steps
        student = OpenSoraInpaintPipeline(transformer, _cast(pipe.vae, torch.float32),
                                          _cast(pipe.text_encoder, torch.float32), pipe.tokenizer,
                                          student_scheduler(pipe.scheduler, config), **self.student_guidance(),
                                          default_num_inference_steps=steps, default_num_frames=pipe.clip_frames)
        with atomic_directory(self.output_dir / "pipeline") as folder:
            student.save_pretrained(folder)
            (folder / "distillation.json").write_text(json.dumps({
                "teacher": config.teacher, "method": config.method, "guidance_scale": self.guidance_scale,
                "task_guidance_scales": self.task_guidance or None,
                "guidance_range": None if self.guidance_bounds is None else list(self.guidance_bounds),
                "teacher_steps": config.teacher_steps, "student_steps": steps, "train_steps": self.step,
                "given_frames_weight": config.given_frames_weight,
                "given_frames_from_noise": config.given_frames_from_noise, "student_init": config.student_init,
                "student_init_distillation": self._student_init_record()}, indent=1))

    def _student_init_record(self) -> dict | None:
        """The distillation.json of the student this one went on from (its recipe, for the record)."""
        if self.student_init is None:
            return None
        record = self.student_init.parent / "distillation.json"
        return json.loads(record.read_text()) if record.is_file() else None


def _transformer_folder(path: str, flag: str) -> Path:
    """The transformer folder of a model flag's value: ``transformer/`` of a pipeline folder, or the
    folder itself when it is a transformer folder; anything else is a one-line error."""
    folder = Path(path)
    folder = folder / "transformer" if (folder / "model_index.json").is_file() else folder
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{flag} {path}: not a pipeline folder (model_index.json) nor a transformer "
                                "folder (config.json)")
    return folder


def _student_init_folder(path: str, student_class: type, student_config: dict) -> Path:
    """The transformer folder of --student_init (a pipeline folder, or a transformer folder), checked
    against the student's architecture before anything is written: a transformer of another shape is a
    one-line error naming the first difference."""
    from ..models.checkpoints import read_config, transformer_class

    folder = _transformer_folder(path, "--student_init")
    theirs = read_config(folder)
    if transformer_class(theirs) is not student_class:
        raise ValueError(f"--student_init {path}: its transformer is a {transformer_class(theirs).__name__}, the "
                         f"student a {student_class.__name__}; start from a student of this teacher")
    for key, value in json.loads(json.dumps(dict(student_config))).items():  # (tuples as the JSON's lists)
        if not key.startswith("_") and theirs.get(key, value) != value:
            raise ValueError(f"--student_init {path}: its transformer's {key} is {theirs[key]!r}, the student's "
                             f"{value!r}; start from a student of this teacher (with --guidance_range, one that "
                             "has a guidance embedding)")
    return folder


def _cast(module, dtype):
    """``module`` in ``dtype`` (a no-op, and no diffusers warning, when it already is)."""
    return module if next(module.parameters()).dtype == dtype else module.to(dtype)


def distill(config: DistillConfig) -> dict:
    return train(config, DistillTrainer)
