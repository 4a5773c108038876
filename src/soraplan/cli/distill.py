"""``soraplan distill``: a few-step or guidance-free student of an I2V teacher (soraplan.training.distill_trainer).

Every flag of ``soraplan train`` applies (data, masks, EMA, checkpoints, resume, DDP / DeepSpeed through
``torchrun`` or ``accelerate launch``); the student's architecture and the VAE and text encoder come
from ``--teacher``. The student lands in ``<output_dir>/pipeline``, a pipeline folder that ``soraplan
sample --model_path``, ``demo --pipeline``, ``eval --pipeline`` and ``serve --pipeline`` take as it is.
"""

from __future__ import annotations

import json
import os

from .dataclass_args import add_dataclass_arguments, dataclass_from_args
from .errors import UserError
from .train import HELPS as TRAIN_HELPS
from .train import TRAIN_CHOICES, with_local_folders

HELPS = {
    **TRAIN_HELPS,
    "teacher": "the I2V model to distil: a pipeline folder or Hub id (its VAE and text encoder are used), or a "
               "transformer folder with --ae_path and --text_encoder_name_1",
    "model": "not needed: the student has the teacher's architecture",
    "output_dir": "checkpoint-N/ folders, model/ (the student transformer), pipeline/ (the student, ready to sample)",
    "method": "lcm: a few-step student (latent consistency distillation, guidance built in); guidance: one pass "
              "instead of two at the teacher's steps",
    "guidance_scale": "the classifier-free guidance the student learns to give in one pass (default: the teacher's, "
                      "for each example its mask type's when the teacher has per-task defaults; a given value "
                      "applies to every task); "
                      "with --guidance_range, the student's default scale",
    "guidance_range": "LOW,HIGH: the student takes the guidance scale as an input (a new zero-initialised "
                      "embedding) and learns every scale in the range, one pass a step; sampled with "
                      "--guidance_scale inside it",
    "teacher_steps": "lcm: the timestep grid the teacher's DDIM solver walks (divides 1000)",
    "student_steps": "lcm: the student's default sampling steps (divides --teacher_steps)",
    "target_ema_decay": "lcm: EMA decay of the target network (0: the student itself, without gradient)",
    "huber_c": "lcm: pseudo-Huber constant of the consistency loss (0: mean squared error)",
    "given_frames_weight": "lcm: weight of an extra loss that pulls the student's clean estimate of the latent "
                           "frames holding given frames (i2v's first, a transition's first and last, a "
                           "continuation's start) to the training clip's own latents (0: off)",
    "given_frames_from_noise": "lcm: apply the --given_frames_weight term also to the student's estimate from pure "
                               "noise at the last timestep, the one jump of one-step sampling (one more "
                               "student evaluation per training example)",
    "student_init": "start the student from these weights (a student's pipeline or transformer folder with the "
                    "teacher's architecture) instead of the teacher's, e.g. to go on distilling it with "
                    "another loss",
    "cfg": "caption dropout (0 by default: the student always learns the guided prediction)",
}


def add_parser(subparsers) -> None:
    from ..training.distill_trainer import METHODS, DistillConfig

    parser = subparsers.add_parser("distill", help="distil an I2V model into a few-step / guidance-free student")
    add_dataclass_arguments(parser, DistillConfig, HELPS, choices={**TRAIN_CHOICES, "method": list(METHODS)})
    parser.set_defaults(run=run)


def run(args) -> int:
    import dataclasses

    from ..training.distill_trainer import DistillConfig, distill
    from ..training.runtime import PeerFailure
    from .options import resolve_model_flag

    try:
        config = dataclass_from_args(DistillConfig, args)  # validates the flags before anything loads
        config = dataclasses.replace(config, teacher=str(resolve_model_flag(config.teacher, "--teacher").folder))
        config = with_local_folders(config)
        result = distill(config)
    except (FileNotFoundError, ValueError, json.JSONDecodeError, PeerFailure) as error:
        raise UserError(str(error)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))
    return 0
