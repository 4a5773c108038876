"""`soraplan train-vae` end to end on real mp4 files: loss goes down, checkpoints, resume, final model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from soraplan.models.vae import WFVAE
from soraplan.training.checkpoints import list_checkpoints, prune_checkpoints, resolve_resume


def train_vae(*args):
    return subprocess.run([sys.executable, "-m", "soraplan", "train-vae", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_train_resume_and_load(videos, tmp_path):
    out = tmp_path / "run"
    common = ["--video_path", videos / "train", "--eval_video_path", videos / "eval", "--ckpt_dir", out,
              "--model_config", videos / "tiny_vae.json", "--num_frames", 9, "--resolution", 32, "--batch_size", 2,
              "--lr", 1e-3, "--log_steps", 1, "--save_ckpt_step", 10, "--eval_steps", 10, "--ema", "--ema_decay", 0.9,
              "--wavelet_loss", "--disc_start", 14, "--disc_ndf", 8, "--disc_num_layers", 2, "--seed", 0]
    result = train_vae(*common, "--max_steps", 20)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 20 and summary["eval_psnr"] > 5

    records = metrics(out)
    rec = [r["rec_loss"] for r in records if "rec_loss" in r]
    assert sum(rec[-4:]) / 4 < 0.8 * sum(rec[:4]) / 4, rec  # reconstruction improves
    assert any("disc_loss" in r for r in records) and any("gan_loss" in r for r in records)
    assert any("wavelet_loss" in r for r in records)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-10", "checkpoint-20"]
    for name in ("vae", "vae_ema", "accelerate_state"):
        assert (out / "checkpoint-20" / name).is_dir()

    final = WFVAE.from_pretrained(out / "vae")
    ema = WFVAE.from_pretrained(out / "checkpoint-20" / "vae_ema")
    for a, b in zip(final.parameters(), ema.parameters()):
        assert torch.equal(a, b)  # the final model is the EMA model

    resumed = train_vae(*common, "--max_steps", 24, "--resume_from_checkpoint", "latest", "--checkpoints_total_limit", 1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [r["step"] for r in metrics(out) if "rec_loss" in r or "disc_loss" in r]
    assert steps[-4:] == [21, 22, 23, 24]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--num_frames", 8], "not 4k+1"),
        (["--resolution", 30], "multiple of 8"),
        (["--video_path", "/no/such/folder"], "does not exist"),
        (["--resume_from_checkpoint", "checkpoint-999"], "not found"),
    ],
)
def test_user_mistakes(videos, tmp_path, extra, message, capsys):
    """In this process (no start-up per case); one case also as its own process, as a user meets it."""
    from soraplan.cli.main import main

    args = ["--video_path", videos / "train", "--ckpt_dir", tmp_path / "o", "--model_config", videos / "tiny_vae.json",
            "--num_frames", 9, "--resolution", 32, "--max_steps", 1]
    code = main(["train-vae", *map(str, args), *map(str, extra)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err[-2000:]
    if message == "not 4k+1":
        result = train_vae(*args, *extra)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_bookkeeping(tmp_path):
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / ".checkpoint-20.partial").mkdir()  # an interrupted save is never a candidate
    assert resolve_resume(tmp_path, "latest").name == "checkpoint-15"
    assert resolve_resume(tmp_path, None) is None
    assert [p.name for p in prune_checkpoints(tmp_path, 2)] == ["checkpoint-5"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-15"]


@pytest.mark.dist  # two processes: `make test-dist`
def test_two_process_data_parallel_training(videos, tmp_path):
    """torchrun with 2 CPU processes: one gloo group, one set of weights, per-rank RNG state saved."""
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "soraplan", "train-vae",
         "--video_path", str(videos / "train"), "--eval_video_path", str(videos / "eval"), "--ckpt_dir", str(out),
         "--model_config", str(videos / "tiny_vae.json"), "--num_frames", "9", "--resolution", "32",
         "--batch_size", "2", "--max_steps", "4", "--save_ckpt_step", "4", "--log_steps", "1"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 reports
    state = out / "checkpoint-4" / "accelerate_state"
    assert (state / "random_states_0.pkl").is_file() and (state / "random_states_1.pkl").is_file()
    assert WFVAE.from_pretrained(out / "vae") is not None


@pytest.mark.slow  # a DeepSpeed launch
def test_deepspeed_launch_is_a_one_line_error(videos, tmp_path):
    """train-vae runs under DDP; under a DeepSpeed config it says so in one line before training."""
    pytest.importorskip("deepspeed")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         "scripts/accelerate_configs/deepspeed_zero2_config.yaml", "--num_processes", "1", "-m", "soraplan",
         "train-vae", "--video_path", str(videos / "train"), "--ckpt_dir", str(tmp_path / "run"),
         "--model_config", str(videos / "tiny_vae.json"), "--num_frames", "9", "--resolution", "32", "--max_steps", "2"],
        capture_output=True, text=True, timeout=600, cwd=root, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert result.returncode != 0
    expected = "soraplan train-vae: error: this launch uses DeepSpeed, which the VAE trainer does not run under"
    assert expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run" / "vae").exists()
