"""`soraplan train --lora_rank`: an adapter on the frozen transformer, trained by the I2V trainer."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from soraplan.data import read_video

from ..conftest import write_image
from .test_train_i2v import ROOT, assets, common, kill_when, records, train  # noqa: F401 (assets: the fixture)

ENV = {"OMP_NUM_THREADS": "1"}
LORA = ["--lora_rank", 4, "--lora_alpha", 8]
ADAPTER = "pytorch_lora_weights.safetensors"


@pytest.mark.slow  # a training run and three sampling processes: about 40 s
def test_a_lora_run_writes_an_adapter_that_sampling_loads(assets, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    result = train(*common(assets, out, *LORA, "--train_batch_size", 2, "--max_train_steps", 12,
                           "--checkpointing_steps", 6, "--use_ema", "--ema_decay", 0.9,
                           "--validation_prompt", "clip 1", "--validation_steps", 12, "--validation_sampling_steps", 2),
                   env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("checkpoint")) == [
        "lora", "lora_ema", "metrics.jsonl", "validation"]  # the adapter only: no model/ copy of the base
    for folder in (out / "lora", out / "checkpoint-12" / "lora", out / "checkpoint-12" / "lora_ema"):
        weights = load_file(folder / ADAPTER)
        assert weights and all(k.startswith("transformer.") and ".lora_" in k for k in weights), folder
    from soraplan.utils.files import current_umask

    readable = 0o044 & ~current_umask()  # safetensors writes 0600; published files are as the umask allows
    assert all((p.stat().st_mode & 0o044) == readable for p in out.rglob("*.safetensors"))
    base_bytes = (assets / "model" / "diffusion_pytorch_model.safetensors").stat().st_size
    state = out / "checkpoint-12" / "accelerate_state"
    assert sum(p.stat().st_size for p in state.iterdir() if "model" in p.name) < base_bytes / 3
    with safe_open(str(out / "lora" / ADAPTER), "pt") as handle:
        config = json.loads(handle.metadata()["lora_adapter_metadata"])
    assert config["transformer.r"] == 4 and config["transformer.lora_alpha"] == 8
    moved = load_file(out / "lora" / ADAPTER)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in moved.items())  # B starts at 0

    # the base pipeline, with and without the trained adapter
    from ..conftest import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.transformer = type(pipe.transformer).from_pretrained(assets / "model")
    pipe.save_pretrained(tmp_path / "pipe")
    image = write_image(tmp_path / "first.png", 32, 32, seed=3)
    frames = {}
    for name, extra in {"base": [], "lora": ["--lora", out / "lora"], "zero": ["--lora", f"{out / 'lora'}:0"]}.items():
        sampled = subprocess.run(
            [sys.executable, "-m", "soraplan", "sample", "--model_path", str(tmp_path / "pipe"), "--text_prompt",
             "clip 1", "--conditional_pixel_values_path", str(image), "--num_frames", "9", "--height", "32",
             "--width", "32", "--num_sampling_steps", "3", "--max_sequence_length", "32", "--crf", "0",
             "--save_img_path", str(tmp_path / name), *map(str, extra)], capture_output=True, text=True, timeout=600)
        assert sampled.returncode == 0, sampled.stderr[-3000:]
        frames[name] = read_video(next((tmp_path / name).glob("*.mp4")))[0]
    assert np.array_equal(frames["zero"], frames["base"]) and not np.array_equal(frames["lora"], frames["base"])


@pytest.mark.slow  # three training runs: about a minute
def test_kill_and_resume_reproduces_the_uninterrupted_lora_run(assets, tmp_path):  # noqa: F811
    args = [*LORA, "--train_batch_size", 1, "--max_train_steps", 12, "--checkpointing_steps", 4, "--use_ema",
            "--lr_scheduler", "cosine", "--lr_warmup_steps", 2]
    reference = train(*common(assets, tmp_path / "straight", *args), env=ENV)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    kill_when([sys.executable, "-m", "soraplan", "train", *map(str, common(assets, out, *args))], out / "checkpoint-4", ENV)
    assert not (out / "lora").exists(), "the run finished before it could be killed"
    resumed = train(*common(assets, out, *args, "--resume_from_checkpoint", "latest"), env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = records(tmp_path / "straight", "train_loss"), records(out, "train_loss")
    assert sorted(got) == list(range(1, 13))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    for name in ("lora", "lora_ema"):
        a, b = load_file(tmp_path / "straight" / name / ADAPTER), load_file(out / name / ADAPTER)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name


def test_lora_mistakes_are_one_line_errors(assets, tmp_path, capsys):  # noqa: F811
    from soraplan.cli.main import main

    cases = [
        (["--lora_rank", 4, "--lora_target_modules", "to_qq"], "--lora_target_modules to_qq"),
        (["--lora_rank", -1], "--lora_rank must be >= 0"),
        (["--lora_rank", 4, "--text_encoder_device", "nowhere"], "--text_encoder_device 'nowhere' is no device"),
    ]
    for extra, message in cases:
        code = main(["train", *map(str, common(assets, tmp_path / "o", *extra, "--max_train_steps", 1))])
        # (model loading draws progress bars on stderr: any tqdm line, whatever its unit, is not an error)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not re.search(r"\d+%\|", line)]
        assert code == 2 and len(err) == 1 and message in err[0], (extra, err)
    assert not (tmp_path / "o" / "lora").exists()


@pytest.mark.slow  # a training process: about 20 s
def test_the_release_lora_script_runs_on_cpu(assets, tmp_path):  # noqa: F811
    """scripts/text_condition/gpu/train_inpaint_lora_v1_3.sh with tiny parts: its flags parse, the text
    encoder runs apart from the model (--text_encoder_device cpu, states cached) and an adapter comes out."""
    import os

    env = {**os.environ, **ENV, "LAUNCH": sys.executable, "DATA": str(assets / "train" / "data.txt"),
           "MODEL": str(assets / "model"), "AE_PATH": str(assets / "vae"), "TEXT_ENCODER": str(assets / "t5"),
           "OUTPUT_DIR": str(tmp_path / "out"), "RANK": "4"}
    result = subprocess.run(
        ["bash", "scripts/text_condition/gpu/train_inpaint_lora_v1_3.sh", "--num_frames", "9", "--max_height", "32",
         "--max_width", "32", "--max_hxw", "1024", "--min_hxw", "256", "--hw_stride", "16", "--train_fps", "8",
         "--min_num_frames", "9", "--max_train_steps", "2", "--model_max_length", "32", "--mixed_precision", "no",
         "--dataloader_num_workers", "0", "--checkpointing_steps", "2", "--lr_warmup_steps", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_file(tmp_path / "out" / "lora_ema" / ADAPTER)
    assert list((tmp_path / "out" / "text_cache").glob("*.safetensors"))


@pytest.mark.slow  # DeepSpeed launches: about a minute
def test_lora_under_deepspeed_zero2_checkpoints_without_the_base_and_resumes(assets, tmp_path):  # noqa: F811
    """ZeRO-2 on 2 ranks (DeepSpeed's CPU accelerator): the checkpoint leaves the frozen base out, a
    resume from it continues, and the adapter matches a single-process run with the same global batch."""
    pytest.importorskip("deepspeed")
    env = {**ENV, "DS_ACCELERATOR": "cpu"}
    flags = [*LORA, "--mixed_precision", "no", "--checkpointing_steps", 1]
    single = train(*common(assets, tmp_path / "one", "--train_batch_size", 2, "--max_train_steps", 2, *flags), env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                "scripts/accelerate_configs/deepspeed_zero2_config.yaml", "--num_processes", "2",
                "--main_process_port", "29654", "-m"]
    for steps in (1, 2):  # stop after step 1, then resume from its ZeRO checkpoint
        zero2 = train(*common(assets, tmp_path / "ds", "--train_batch_size", 1, "--max_train_steps", steps, *flags,
                              "--resume_from_checkpoint", "latest"), env=env, launcher=launcher, cwd=ROOT)
        assert zero2.returncode == 0, zero2.stderr[-3000:]
    module_states = list((tmp_path / "ds" / "checkpoint-1" / "accelerate_state").rglob("*model_states.pt"))
    base_bytes = (assets / "model" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert module_states and all(p.stat().st_size < base_bytes / 3 for p in module_states)
    one, two = records(tmp_path / "one", "train_loss"), records(tmp_path / "ds", "train_loss")
    assert one[2] == pytest.approx(two[2], rel=1e-4)
    a, b = load_file(tmp_path / "one" / "lora" / ADAPTER), load_file(tmp_path / "ds" / "lora" / ADAPTER)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
