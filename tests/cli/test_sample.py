"""`soraplan sample` as users run it: reference flags, real files, DDP over torchrun, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from soraplan.data import read_video

from ..conftest import build_tiny_pipeline, make_videos, write_image

FAST = ["--num_frames", "9", "--num_sampling_steps", "3", "--max_sequence_length", "24", "--seed", "7"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    build_tiny_pipeline().save_pretrained(root / "pipe")
    write_image(root / "a.png", 64, 96, seed=1)
    write_image(root / "b.png", 64, 96, seed=2)
    make_videos(root / "videos", 1, frames=12, size=64)
    (root / "prompts.txt").write_text("a red circle\na blue square\na green triangle\n")
    (root / "cond.txt").write_text(f"{root / 'a.png'}\n{root / 'a.png'},{root / 'b.png'}\n{root / 'videos' / 'clip000.mp4'}\n")
    return root


def sample(*args, launcher=None, timeout=600, env=None):
    command = (launcher or [sys.executable, "-m"]) + ["soraplan", "sample", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_prompts_file_and_conditions_file(assets, tmp_path):
    result = sample("--model_path", assets / "pipe", "--text_prompt", assets / "prompts.txt",
                    "--conditional_pixel_values_path", assets / "cond.txt", "--save_img_path", tmp_path, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prompt 0 (i2v)" in result.stdout and "prompt 1 (transition)" in result.stdout
    assert "prompt 2 (continuation)" in result.stdout
    for index in range(3):
        frames, fps = read_video(tmp_path / f"EulerAncestralDiscrete_{index}_gs7.5_s3.mp4")
        assert frames.shape[0] == 9 and fps == 24
    assert read_video(tmp_path / "EulerAncestralDiscrete_0_gs7.5_s3.mp4")[0].shape[1:3] == (64, 96)


def test_direct_paths_keyframes_samples_and_png(assets, tmp_path):
    keyframes = f"{assets / 'a.png'},{assets / 'b.png'},{assets / 'a.png'}"
    result = sample("--model_path", assets / "pipe", "--text_prompt", "keyframes",
                    "--conditional_pixel_values_path", keyframes, "--conditional_pixel_values_indices", "0,4,-1",
                    "--num_samples_per_prompt", "3", "--crop_for_hw", "--height", "32", "--width", "48",
                    "--save_img_path", tmp_path, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"EulerAncestralDiscrete_0_gs7.5_s3{s}.mp4" for s in ("", "_i0", "_i1", "_i2")]
    grid, _ = read_video(tmp_path / names[0])
    assert grid.shape[1:3] == (66, 98)  # 2x2 grid of 32x48 with 1-pixel borders
    image = sample("--model_path", assets / "pipe", "--text_prompt", "one", "--conditional_pixel_values_path",
                   assets / "a.png", "--save_img_path", tmp_path / "img", "--num_frames", "1",
                   "--num_sampling_steps", "2", "--max_sequence_length", "24")
    assert image.returncode == 0, image.stderr[-3000:]
    assert [p.suffix for p in (tmp_path / "img").iterdir()] == [".png"]


def test_two_process_ddp_matches_one_process(assets, tmp_path):
    args = ["--model_path", assets / "pipe", "--text_prompt", assets / "prompts.txt",
            "--conditional_pixel_values_path", assets / "cond.txt", "--crf", "0", *FAST]  # lossless: exact frames
    one_thread = {"OMP_NUM_THREADS": "1"}  # torchrun's default per process: same float summation order
    single = sample(*args, "--save_img_path", tmp_path / "one", env=one_thread)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = sample(*args, "--save_img_path", tmp_path / "two",
                 launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"], env=one_thread)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "[rank 1] prompt 1" in ddp.stdout and "[rank 0] prompt 2" in ddp.stdout
    for index in range(3):
        name = f"EulerAncestralDiscrete_{index}_gs7.5_s3.mp4"
        assert np.array_equal(read_video(tmp_path / "one" / name)[0], read_video(tmp_path / "two" / name)[0])


@pytest.mark.parametrize("num_frames,exact", [(13, True), (9, False)])
def test_sequence_parallel_matches_one_process(assets, tmp_path, num_frames, exact):
    """13 frames = 4 latent frames split 2 + 2; 9 frames = 3 latent frames, padded to 4 and masked."""
    args = ["--model_path", assets / "pipe", "--text_prompt", "a red circle", "--conditional_pixel_values_path",
            assets / "a.png", "--crf", "0", *FAST, "--num_frames", num_frames]
    one_thread = {"OMP_NUM_THREADS": "1"}
    single = sample(*args, "--save_img_path", tmp_path / "one", env=one_thread)
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = sample(*args, "--sp", "--save_img_path", tmp_path / "sp", env=one_thread,
                      launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "[rank 1]" not in parallel.stdout  # rank 0 writes
    name = "EulerAncestralDiscrete_0_gs7.5_s3.mp4"
    a = read_video(tmp_path / "one" / name)[0].astype(int)
    b = read_video(tmp_path / "sp" / name)[0].astype(int)
    if exact:
        assert np.array_equal(a, b)
    else:  # the masked padding changes float summation order only
        assert np.abs(a - b).mean() < 0.05 and np.abs(a - b).max() <= 8


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model_path", "/no/such/model"], "neither a pipeline folder"),
        (["--num_frames", "10"], "num_frames 10 is not 4k+1"),
        (["--conditional_pixel_values_path", "missing.png"], "does not exist"),
        (["--sp"], "--sp needs several processes"),
        (["--model_type", "t2v"], "--mask_type t2iv"),
        (["--conditional_pixel_values_indices", "0,x"], "integers"),
        (["--noise_strength", "3"], "noise_strength"),
    ],
)
def test_user_mistakes(assets, tmp_path, args, message):
    base = {"--model_path": str(assets / "pipe"), "--text_prompt": "p", "--save_img_path": str(tmp_path)}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv] + [a for a in args if a in ("--sp",)]
    result = sample(*flat, "--num_sampling_steps", "2", "--max_sequence_length", "24",
                    *([] if "--num_frames" in args else ["--num_frames", "9"]))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
