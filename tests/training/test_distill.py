"""`soraplan distill` end to end with a tiny real teacher pipeline and real mp4 clips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from soraplan.data import read_video

from ..conftest import build_tiny_pipeline, make_videos, write_image
from .test_train_i2v import annotate, kill_when, records

ROOT = Path(__file__).resolve().parents[2]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    pipe = build_tiny_pipeline()
    pipe.save_pretrained(root / "teacher")
    pipe.transformer.save_pretrained(root / "release" / "transformer")  # the release's separate folders
    pipe.vae.save_pretrained(root / "release" / "vae")
    pipe.text_encoder.save_pretrained(root / "release" / "t5")
    pipe.tokenizer.save_pretrained(root / "release" / "t5")
    annotate(root / "train", make_videos(root / "train", 8, frames=12, size=32, seed=0))
    write_image(root / "first.png", 32, 32, seed=1)
    return root


def flags(assets, out, *extra):
    return ["--teacher", assets / "teacher", "--data", assets / "train" / "data.txt", "--output_dir", out,
            "--mask_config", ROOT / "scripts/train_configs/mask_config.yaml", "--num_frames", 9, "--max_height", 32,
            "--max_width", 32, "--hw_stride", 16, "--train_fps", 8, "--min_num_frames", 9, "--model_max_length", 32,
            *extra]


def in_process(assets, out, **overrides):
    """The trainer of `flags(...)`, built in this process (for looking inside it)."""
    from soraplan.training.distill_trainer import DistillConfig, DistillTrainer

    values = dict(teacher=str(assets / "teacher"), data=str(assets / "train" / "data.txt"), output_dir=str(out),
                  mask_config=str(ROOT / "scripts/train_configs/mask_config.yaml"), num_frames=9, max_height=32,
                  max_width=32, hw_stride=16, train_fps=8, min_num_frames=9, model_max_length=32,
                  train_batch_size=2, checkpointing_steps=0)
    return DistillTrainer(DistillConfig(**{**values, **overrides}))


def soraplan(*args):
    return subprocess.run([sys.executable, "-m", "soraplan", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **ENV})


def test_consistency_student_is_a_pipeline_that_samples_in_its_own_steps(assets, tmp_path):
    out = tmp_path / "run"
    result = soraplan("distill", *flags(assets, out, "--train_batch_size", 2, "--max_train_steps", 4,
                                        "--learning_rate", 1e-4, "--use_ema", "--student_steps", 4))
    assert result.returncode == 0, result.stderr[-3000:]
    index = json.loads((out / "pipeline" / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "LCMScheduler"]
    assert (index["default_num_inference_steps"], index["default_guidance_scale"]) == (4, 1.0)
    assert index["distilled_guidance_scale"] == 7.5  # the tiny teacher's default guidance
    sampled = soraplan("sample", "--model_path", out / "pipeline", "--text_prompt", "clip 1",
                       "--conditional_pixel_values_path", assets / "first.png", "--num_frames", 9, "--height", 32,
                       "--width", 32, "--max_sequence_length", 32, "--save_img_path", tmp_path / "videos")
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    (video,) = (tmp_path / "videos").glob("*.mp4")
    assert video.name.startswith("LCM_") and "_s4" in video.name  # the student's sampler and steps
    assert read_video(video)[0].shape == (9, 32, 32, 3)
    record = json.loads(video.with_suffix(".json").read_text())
    assert record["sampler"]["method"] == "LCM"
    twice = soraplan("sample", "--model_path", out / "pipeline", "--text_prompt", "clip 1", "--guidance_scale", 3,
                     "--conditional_pixel_values_path", assets / "first.png", "--num_frames", 9, "--height", 32,
                     "--width", 32, "--max_sequence_length", 32, "--save_img_path", tmp_path / "twice")
    lines = twice.stderr.strip().splitlines()
    assert twice.returncode == 2 and "guidance-distilled" in lines[-1] and "Traceback" not in twice.stderr


def test_consistency_step_is_the_one_the_sampler_takes(assets, tmp_path):
    """Training and sampling agree: the student's consistency function at (x_t, t) is what diffusers'
    LCMScheduler returns as the denoised sample for the same model output."""
    trainer = in_process(assets, tmp_path / "unit")
    scheduler = trainer.scheduler
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    sample, output = torch.randn(1, 8, 3, 4, 4, generator=generator), torch.randn(1, 8, 3, 4, 4, generator=generator)
    for t in scheduler.timesteps.tolist():
        scheduler._step_index = list(scheduler.timesteps.tolist()).index(t)
        denoised = scheduler.step(output, t, sample, generator=generator).denoised
        ours = trainer.consistency(output, sample, torch.tensor([t]))
        assert torch.allclose(ours, denoised, atol=1e-5), t


def noised_training_clips(trainer, timesteps=(100, 500, 900)):
    """(encoded clip, t, x_t) for every training clip (each with the mask its curriculum draws, fixed
    draws) at each of ``timesteps``: the inputs the checks below look at the student on."""
    for index in range(len(trainer.dataset)):
        item = trainer.dataset[index]
        encoded = trainer.encode_batch({"video": item["video"][None], "caption": [item["caption"]]}, -7, [index])
        for t in timesteps:
            t = torch.tensor([t])
            yield encoded, t, trainer.noise_scheduler.add_noise(encoded.latents, encoded.noise, t)


@torch.no_grad()
def guided_distance(trainer, scale: float, embed: bool = False) -> float:
    """Mean relative L2 distance, over the training clips at three noise levels, between the student's
    one pass and the teacher's two-pass guided prediction at ``scale`` (``embed``: the student is
    given the scale, as a guidance-range student is)."""
    errors = []
    w = torch.tensor([scale])
    for encoded, t, noisy in noised_training_clips(trainer):
        guided = trainer.teacher_guided(noisy, encoded.condition, t, encoded.text, encoded.text_mask, w)
        single = trainer.student(trainer.model, noisy, encoded.condition, t, encoded.text, encoded.text_mask,
                                 w if embed else None)
        errors.append(((single - guided).norm() / guided.norm()).item())
    return float(np.mean(errors))


@torch.no_grad()
def scale_response(trainer, low: float, high: float) -> float:
    """Mean cosine similarity between the student's change from guidance ``low`` to ``high`` and the
    guided teacher's (0 for a student that ignores its guidance input)."""
    cosines = []
    w = {v: torch.tensor([v]) for v in (low, high)}
    for encoded, t, noisy in noised_training_clips(trainer):
        inputs = (noisy, encoded.condition, t, encoded.text, encoded.text_mask)
        teacher = trainer.teacher_guided(*inputs, w[high]) - trainer.teacher_guided(*inputs, w[low])
        student = trainer.student(trainer.model, *inputs, w[high]) - trainer.student(trainer.model, *inputs, w[low])
        cosines.append(torch.nn.functional.cosine_similarity(teacher.flatten(), student.flatten(), dim=0).item())
    return float(np.mean(cosines))


def test_guidance_student_matches_the_guided_teacher_in_one_pass(assets, tmp_path):
    """After 60 steps the student's single pass is within 2 % of the teacher's two-pass guided
    prediction; the teacher's own conditional pass, where the student starts, is 3-4 % away at
    guidance 4."""
    trainer = in_process(assets, tmp_path / "run", method="guidance", guidance_scale=4.0, learning_rate=1e-4,
                         max_train_steps=60)
    before = guided_distance(trainer, 4.0)
    trainer.train()
    after = guided_distance(trainer, 4.0)
    assert before > 0.025, before  # guidance really changes the teacher's prediction
    assert after < 0.02 and after < 0.5 * before, (before, after)
    index = json.loads((tmp_path / "run" / "pipeline" / "model_index.json").read_text())
    assert index["scheduler"][1] == "EulerAncestralDiscreteScheduler"  # the teacher's sampler, one pass a step
    assert (index["default_num_inference_steps"], index["distilled_guidance_scale"]) == (100, 4.0)


def test_guidance_range_student_takes_the_scale_as_an_input(assets, tmp_path):
    """--guidance_range 2,6: the student (the teacher plus a zero-initialised guidance embedding) gets
    closer to the guided teacher at both ends of the range in one pass, samples at any scale inside
    it without an unconditional pass, and refuses one outside."""
    from soraplan.pipelines import load_pipeline

    trainer = in_process(assets, tmp_path / "run", method="guidance", guidance_range="2,6", guidance_scale=4.0,
                         learning_rate=1e-4, max_train_steps=60)
    before = {w: guided_distance(trainer, w, embed=True) for w in (2.0, 4.0, 6.0)}
    trainer.train()
    after = {w: guided_distance(trainer, w, embed=True) for w in (2.0, 4.0, 6.0)}
    # 2 starts close (the teacher's conditional pass is nearly guidance 2) and stays close; 4 and 6 come
    # much closer (about 0.036 -> 0.013 and 0.060 -> 0.031)
    assert after[2.0] < 0.025 and after[4.0] < 0.6 * before[4.0] and after[6.0] < 0.6 * before[6.0], (before, after)
    # and the student's change from scale 2 to 6 points where the teacher's does (about 0.8)
    assert scale_response(trainer, 2.0, 6.0) > 0.6
    index = json.loads((tmp_path / "run" / "pipeline" / "model_index.json").read_text())
    assert index["distilled_guidance_range"] == [2.0, 6.0] and index["default_guidance_scale"] == 4.0
    pipe = load_pipeline(str(tmp_path / "run" / "pipeline"))
    assert pipe.transformer.config.guidance_embeds and pipe.guidance_in_one_pass
    calls = []
    pipe.transformer.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["guidance"]),
                                               with_kwargs=True)
    videos = {w: pipe("clip 1", conditions=[str(assets / "first.png")], num_frames=9, height=32, width=32,
                      num_inference_steps=3, guidance_scale=w, max_sequence_length=32,
                      generator=torch.Generator().manual_seed(0)).videos for w in (2.5, 5.5)}
    assert len(calls) == 6 and [c.tolist() for c in calls] == [[2.5]] * 3 + [[5.5]] * 3  # one pass a step
    assert not np.array_equal(videos[2.5], videos[5.5])  # the scale reaches the model
    with pytest.raises(ValueError, match="takes guidance scales from 2 to 6"):
        pipe("clip 1", conditions=[str(assets / "first.png")], num_frames=9, height=32, width=32,
             num_inference_steps=3, guidance_scale=7.5, max_sequence_length=32)


@pytest.mark.parametrize("method", ["lcm", "guidance"])
def test_each_example_is_guided_at_its_mask_types_default(assets, tmp_path, method):
    """A teacher whose pipeline guides transitions at 2 and everything else at its default (7.5): the
    teacher's target for each example uses the scale of the mask type it was drawn with, and the
    fixed-scale student samples at 1 for every task; an explicit --guidance_scale applies to all."""
    from soraplan.masks import MaskType
    from soraplan.pipelines import load_pipeline

    teacher = load_pipeline(str(assets / "teacher"))
    teacher.register_to_config(task_guidance_scales={"transition": 2.0})
    teacher.save_pretrained(tmp_path / "teacher")
    trainer = in_process(assets, tmp_path / "run", teacher=str(tmp_path / "teacher"), method=method, max_train_steps=1)
    seen = []
    trainer.teacher_guided = lambda *args, **kwargs: seen.append(args[5]) or torch.zeros_like(args[0])
    items = [trainer.dataset[i] for i in range(len(trainer.dataset))]
    batch = {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items]}
    kinds = set()
    for step in range(3):
        positions = list(range(len(items)))
        types = trainer.encode_batch(batch, step, positions).mask_types
        trainer.loss(batch, step, positions)
        assert seen[-1].tolist() == [2.0 if kind is MaskType.transition else 7.5 for kind in types]
        kinds.update(types)
    assert MaskType.transition in kinds and len(kinds) > 1  # both kinds of example were drawn
    trainer.train()
    index = json.loads((tmp_path / "run" / "pipeline" / "model_index.json").read_text())
    assert index["default_guidance_scale"] == 1.0 and not index.get("task_guidance_scales")
    record = json.loads((tmp_path / "run" / "pipeline" / "distillation.json").read_text())
    assert record["guidance_scale"] == 7.5 and record["task_guidance_scales"] == {"transition": 2.0}

    explicit = in_process(assets, tmp_path / "explicit", teacher=str(tmp_path / "teacher"), method=method,
                          guidance_scale=4.0)
    encoded = explicit.encode_batch(batch, 0, list(range(len(items))))
    assert explicit.guidance_of(encoded) == (None, None)  # teacher_guided then uses 4 for every example


def test_guidance_range_student_keeps_the_teachers_task_defaults_inside_its_range(assets, tmp_path):
    from soraplan.pipelines import load_pipeline

    teacher = load_pipeline(str(assets / "teacher"))
    teacher.register_to_config(task_guidance_scales={"transition": 2.0})
    teacher.save_pretrained(tmp_path / "teacher")
    settings = {bounds: in_process(assets, tmp_path / bounds, teacher=str(tmp_path / "teacher"), method="guidance",
                                   guidance_range=bounds).student_guidance() for bounds in ("1,8", "3,8")}
    assert settings["1,8"]["task_guidance_scales"] == {"transition": 2.0}
    assert settings["3,8"]["task_guidance_scales"] is None  # 2 lies outside what that student learned
    assert settings["3,8"]["default_guidance_scale"] == 7.5


@pytest.mark.slow  # three distillation runs, about 30 s (the trainer's own kill-and-resume test stays in make test): `make test-slow`
def test_kill_and_resume_reproduces_the_uninterrupted_run(assets, tmp_path):
    """The target network and the EMA are part of the checkpoint: a run killed with -9 and resumed ends
    with the uninterrupted run's student (here one with a guidance embedding), EMA and losses."""
    args = ["--train_batch_size", 1, "--max_train_steps", 12, "--checkpointing_steps", 4, "--use_ema",
            "--learning_rate", 1e-4, "--lr_scheduler", "cosine", "--lr_warmup_steps", 2,
            "--guidance_range", "2,8"]  # an lcm student with a guidance input: the scales drawn resume too
    reference = soraplan("distill", *flags(assets, tmp_path / "straight", *args))
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    kill_when([sys.executable, "-m", "soraplan", "distill", *map(str, flags(assets, out, *args))], out / "checkpoint-4", ENV)
    assert not (out / "pipeline").exists(), "the run finished before it could be killed"
    resumed = soraplan("distill", *flags(assets, out, *args, "--resume_from_checkpoint", "latest"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = records(tmp_path / "straight", "train_loss"), records(out, "train_loss")
    assert sorted(got) == list(range(1, 13))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    for name in ("model", "model_ema", "pipeline/transformer"):
        a = load_file(tmp_path / "straight" / name / "diffusion_pytorch_model.safetensors")
        b = load_file(out / name / "diffusion_pytorch_model.safetensors")
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name
    assert any(key.startswith("guidance_embedder.") for key in a)
    index = json.loads((out / "pipeline" / "model_index.json").read_text())
    assert index["scheduler"][1] == "LCMScheduler" and index["distilled_guidance_range"] == [2.0, 8.0]


def test_bad_flags_are_one_line_errors(assets, tmp_path, capsys):
    from soraplan.cli.main import main
    from soraplan.demo.assets import demo_student_path

    t2v = tmp_path / "t2v"
    build_tiny_pipeline(t2v=True).save_pretrained(t2v)
    tiny = build_tiny_pipeline().transformer
    layers = tiny.config.num_layers
    type(tiny).from_config(tiny.config, num_layers=layers + 1).save_pretrained(tmp_path / "deeper")
    capsys.readouterr()
    cases = [
        (["--method", "progressive"], "invalid choice: 'progressive'"),
        (["--student_steps", 3], "--student_steps 3 does not divide the teacher's grid of --teacher_steps 40"),
        (["--teacher_steps", 48], "must divide the 1000 training timesteps"),
        (["--guidance_scale", 0.5], "--guidance_scale must be at least 1"),
        (["--sp_size", 2], "does not run sequence parallel"),
        (["--guidance_range", "8"], "--guidance_range takes two numbers LOW,HIGH"),
        (["--guidance_range", "6,2"], "need 1 <= LOW < HIGH"),
        (["--guidance_range", "1,4", "--guidance_scale", 5], "--guidance_scale 5 (the student's default) lies outside"),
        (["--guidance_range", "1,4"], "the teacher's guidance 7.5 (the student's default) lies outside"),
        (["--method", "guidance", "--given_frames_weight", 1], "is a term of --method lcm's loss"),
        (["--given_frames_weight", -1], "--given_frames_weight must be >= 0"),
        (["--given_frames_from_noise"], "give --given_frames_weight > 0"),
        (["--student_init", tmp_path / "empty"], "not a pipeline folder (model_index.json) nor a transformer"),
        (["--student_init", t2v], "its transformer is a OpenSoraT2V, the student a OpenSoraInpaint"),
        (["--student_init", tmp_path / "deeper"], f"its transformer's num_layers is {layers + 1}, the student's {layers}"),
    ]
    (tmp_path / "empty").mkdir()
    for teacher, message in ((t2v, "is a text-to-video (T2V) model"), (tmp_path / "none", "no such folder"),
                             (tmp_path / "empty", "not a pipeline folder (model_index.json) nor a transformer"),
                             (demo_student_path(), "is itself a guidance-distilled student")):
        cases.append((["--teacher", teacher], message))  # the later --teacher wins
    for extra, message in cases:
        try:
            code = main(["distill", *map(str, flags(assets, tmp_path / "o", *extra))])
        except SystemExit as exit:  # argparse's own checks (choices)
            code = exit.code
        # (a mistake found once the teacher is loaded comes after its loading progress bars)
        # (model loading draws progress bars on stderr: any tqdm line, whatever its unit, is not an error)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not re.search(r"\d+%\|", line)]
        assert code == 2 and len(err) == 1 and message in err[0], (extra, err)
    assert not (tmp_path / "o").exists()  # nothing written for a mistake


@pytest.mark.dist  # two processes: `make test-dist`
def test_release_script_runs_on_two_processes(assets, tmp_path):
    """scripts/text_condition/gpu/distill_inpaint_v1_3.sh with a teacher given as the release's separate
    transformer / VAE / text-encoder folders, under torchrun with 2 processes (DDP, gloo)."""
    release = assets / "release"
    env = {"LAUNCH": f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port 29643",
           "DATA": str(assets / "train" / "data.txt"), "TEACHER": str(release / "transformer"),
           "AE_PATH": str(release / "vae"), "TEXT_ENCODER": str(release / "t5"), "OUTPUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(
        ["bash", "scripts/text_condition/gpu/distill_inpaint_v1_3.sh", "--num_frames", "9", "--max_height", "32",
         "--max_width", "32", "--max_hxw", "1024", "--min_hxw", "256", "--hw_stride", "16", "--train_fps", "8",
         "--min_num_frames", "9", "--max_train_steps", "2", "--model_max_length", "32", "--mixed_precision", "no",
         "--dataloader_num_workers", "0", "--checkpointing_steps", "2", "--gradient_accumulation_steps", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **ENV, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "checkpoint-2" / "model_ema").is_dir()
    index = json.loads((tmp_path / "out" / "pipeline" / "model_index.json").read_text())
    assert index["default_num_inference_steps"] == 4 and index["distilled_guidance_scale"] == 7.5


def test_lora_student_writes_its_adapter_and_a_merged_pipeline(assets, tmp_path):
    """--lora_rank: only an adapter trains; lora/ holds it and pipeline/ is the teacher with it merged."""
    from soraplan.pipelines import load_pipeline

    trainer = in_process(assets, tmp_path / "run", method="guidance", lora_rank=4, learning_rate=1e-3,
                         max_train_steps=3, use_ema=True)
    trained = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trained and all(".lora_" in name for name in trained)
    trainer.train()
    assert (tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert not (tmp_path / "run" / "model").exists()
    student = load_pipeline(str(tmp_path / "run" / "pipeline"))
    teacher = load_pipeline(str(assets / "teacher"))
    merged, original = student.transformer.state_dict(), teacher.transformer.state_dict()
    assert merged.keys() == original.keys()  # a plain transformer: the adapter is merged in
    changed = [k for k in merged if not torch.equal(merged[k], original[k])]
    assert changed and all(any(t in k for t in ("to_q", "to_k", "to_v", "to_out")) for k in changed)
    from safetensors.torch import load_file as load

    adapter = load(tmp_path / "run" / "lora_ema" / "pytorch_lora_weights.safetensors")
    teacher.load_lora_weights(tmp_path / "run" / "lora_ema")  # the EMA adapter is what the pipeline merged
    teacher.fuse_lora()
    teacher.unload_lora_weights()
    fused = teacher.transformer.state_dict()
    assert adapter and all(torch.allclose(fused[k], merged[k], atol=1e-6) for k in merged)


@pytest.mark.slow  # two DeepSpeed launches and one plain run: about two minutes
def test_zero3_student_equals_the_single_process_one_across_a_resume(assets, tmp_path):
    """accelerate + DeepSpeed ZeRO-3 (CPU accelerator, gloo), 2 ranks x batch 1 == 1 process x batch 2:
    the partitioned student, its gathered target network and EMA, across a resume from the ZeRO
    checkpoint, and the pipeline folder written from the gathered weights."""
    pytest.importorskip("deepspeed")
    from soraplan.pipelines import load_pipeline

    env = {**os.environ, **ENV, "DS_ACCELERATOR": "cpu"}
    common = ["--method", "lcm", "--teacher_steps", 8, "--student_steps", 2, "--mixed_precision", "no",
              "--learning_rate", 1e-3, "--use_ema", "--checkpointing_steps", 1, "--resume_from_checkpoint", "latest"]
    single = soraplan("distill", *flags(assets, tmp_path / "one", *common, "--train_batch_size", 2, "--max_train_steps", 2))
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                "scripts/accelerate_configs/deepspeed_zero3_config.yaml", "--num_processes", "2",
                "--main_process_port", "29657", "-m", "soraplan", "distill"]
    for steps in (1, 2):  # stop after step 1, resume from its ZeRO-3 checkpoint
        zero = subprocess.run(launcher + [str(a) for a in flags(assets, tmp_path / "z3", *common, "--train_batch_size",
                                                                 1, "--max_train_steps", steps)],
                              capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
        assert zero.returncode == 0, zero.stderr[-3000:]
    assert (tmp_path / "z3" / "checkpoint-1" / "accelerate_state" / "pytorch_model").is_dir()
    assert records(tmp_path / "one", "train_loss")[2] == pytest.approx(records(tmp_path / "z3", "train_loss")[2], rel=1e-4)
    for name in ("model", "model_ema", "pipeline/transformer"):
        a = load_file(tmp_path / "one" / name / "diffusion_pytorch_model.safetensors")
        b = load_file(tmp_path / "z3" / name / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            if not key.endswith("to_k.bias"):  # see test_train_i2v.test_two_processes_take_the_single_process_step
                assert torch.allclose(a[key], b[key], atol=1e-5), (name, key)
    assert load_pipeline(tmp_path / "z3" / "pipeline").sampling_settings()[0] == 2


def test_given_frames_loss_reaches_only_the_latent_frames_that_hold_given_frames(assets, tmp_path):
    """--given_frames_weight's term: the distance of the student's clean estimate from the clip's own
    latents, averaged over exactly the latent frames a given frame lies in (i2v: the first; a
    transition: the first and the last; nothing for text-to-video)."""
    import random

    from soraplan.masks import MaskType, compress_mask, temporal_mask

    trainer = in_process(assets, tmp_path / "unit", given_frames_weight=1.0)
    frames, latent_frames = 9, 3
    for kind, given in ((MaskType.i2v, [0]), (MaskType.transition, [0, 2]), (MaskType.t2iv, [])):
        mask = temporal_mask(kind, frames, 0, 0, random.Random(0))[None].float()  # (1, T) 1 = generate
        condition = torch.cat([torch.randn(1, 8, latent_frames, 2, 2), compress_mask(mask, 16, 16)], dim=1)
        latents = torch.randn(1, 8, latent_frames, 2, 2)
        prediction = torch.randn(1, 8, latent_frames, 2, 2, requires_grad=True)
        loss = trainer.given_frames_loss(prediction, latents, condition)
        if not given:
            assert loss.item() == 0
            continue
        loss.backward()
        touched = prediction.grad.abs().sum(dim=(0, 1, 3, 4)).nonzero().flatten().tolist()
        assert touched == given, kind
        expected = trainer.distance(prediction, latents)[:, :, given].mean()
        assert torch.allclose(loss, expected), kind


@pytest.mark.slow  # two distillation runs, about 20 s: `make test-slow`
def test_student_init_goes_on_from_an_earlier_student(assets, tmp_path):
    """--student_init: the student (and the lcm target network) start from an earlier student's weights,
    not the teacher's, and a run with --given_frames_weight records both in distillation.json."""
    first = tmp_path / "first"
    result = soraplan("distill", *flags(assets, first, "--train_batch_size", 2, "--max_train_steps", 3,
                                        "--learning_rate", 1e-3))
    assert result.returncode == 0, result.stderr[-3000:]
    earlier = load_file(str(first / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors"))
    trainer = in_process(assets, tmp_path / "second", student_init=str(first / "pipeline"), given_frames_weight=0.5)
    teacher = trainer.teacher_pipe.transformer.state_dict()
    for name, model in (("student", trainer._unwrapped()), ("target", trainer.target)):
        state = model.state_dict()
        assert all(torch.equal(state[key].float(), earlier[key].float()) for key in earlier), name
        assert any(not torch.equal(state[key].float(), teacher[key].float()) for key in earlier), name
    second = tmp_path / "third"
    result = soraplan("distill", *flags(assets, second, "--train_batch_size", 2, "--max_train_steps", 2,
                                        "--student_init", first / "pipeline" / "transformer",
                                        "--given_frames_weight", 0.5))
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((second / "pipeline" / "distillation.json").read_text())
    assert record["given_frames_weight"] == 0.5 and record["student_init"].endswith("transformer")
    assert record["student_init_distillation"]["train_steps"] == 3  # the earlier student's own record


def test_given_frames_from_noise_adds_the_term_at_the_one_step_samplers_start(assets, tmp_path):
    """--given_frames_from_noise: the loss gains the given-frames term of the student's estimate from
    pure noise at timestep 999 (where one-step sampling starts and ends), computed in the same student
    pass as the consistency estimate; with transitions only, that term is not zero, and it is the same
    number the student gives in a pass of its own."""
    transitions = tmp_path / "transitions.yaml"
    transitions.write_text("min_clear_ratio: 0.0\nmax_clear_ratio: 1.0\nmask_type_ratio_dict_video:\n"
                           "  transition: 1\nmask_type_ratio_dict_image:\n  clear: 1\n")
    trainer = in_process(assets, tmp_path / "unit", given_frames_weight=2.0, given_frames_from_noise=True,
                         mask_config=str(transitions))
    items = [trainer.dataset[index] for index in (0, 1)]
    batch = {"video": torch.stack([item["video"] for item in items]), "caption": [item["caption"] for item in items]}
    with torch.no_grad():
        with_term = trainer.loss(batch, 5, [0, 1]).item()
        trainer.config.given_frames_from_noise = False
        without = trainer.loss(batch, 5, [0, 1]).item()
        encoded = trainer.encode_batch(batch, 5, [0, 1])
        last = torch.full((2,), 999)
        start = trainer.noise_scheduler.add_noise(encoded.latents, encoded.noise, last)
        assert torch.equal(start, encoded.noise)  # zero terminal SNR: the sampler's start is pure noise
        estimate = trainer.consistency(trainer.student(trainer.model, start, encoded.condition, last, encoded.text,
                                                       encoded.text_mask), start, last)
        term = trainer.given_frames_loss(estimate, encoded.latents, encoded.condition).item()
    assert term > 0.01
    assert with_term == pytest.approx(without + 2.0 * term, rel=1e-4)


@torch.no_grad()
def given_frames_error(trainer) -> float:
    """Mean given-frames distance (the term of --given_frames_weight) of the trainer's student over the
    training clips, each with the mask its curriculum draws, at three timesteps of the lcm grid."""
    errors = []
    for encoded, t, noisy in noised_training_clips(trainer, (249, 624, 999)):
        estimate = trainer.consistency(trainer.student(trainer.model, noisy, encoded.condition, t, encoded.text,
                                                       encoded.text_mask), noisy, t)
        errors.append(trainer.given_frames_loss(estimate, encoded.latents, encoded.condition).item())
    return float(np.mean(errors))


@pytest.mark.slow  # two distillation runs, about 30 s: `make test-slow`
def test_given_frames_weight_brings_the_given_frames_closer_to_the_clip(assets, tmp_path):
    """The same short distillation with and without --given_frames_weight: with it, the student's clean
    estimate of the latent frames holding given frames ends nearer the clips' own latents."""
    errors = {}
    for weight in (0, 4):
        out = tmp_path / f"w{weight}"
        result = soraplan("distill", *flags(assets, out, "--train_batch_size", 2, "--max_train_steps", 30,
                                            "--learning_rate", 2e-3, "--given_frames_weight", weight,
                                            "--mask_config", ROOT / "scripts/demo/mask_config_i2v_more.yaml"))
        assert result.returncode == 0, result.stderr[-3000:]
        errors[weight] = given_frames_error(in_process(assets, tmp_path / "look", student_init=str(out / "pipeline")))
    assert errors[4] < 0.85 * errors[0], errors  # about 0.76 here
