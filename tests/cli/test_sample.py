"""`soraplan sample` as users run it: reference flags, real files, DDP over torchrun, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soraplan.data import read_video

from ..conftest import build_tiny_pipeline, make_videos, write_image

FAST = ["--num_frames", "9", "--num_sampling_steps", "3", "--max_sequence_length", "24", "--seed", "7"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    build_tiny_pipeline().save_pretrained(root / "pipe")
    build_tiny_pipeline(t2v=True).save_pretrained(root / "t2v_pipe")
    make_videos(root / "short", 1, frames=5, size=64)
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
                    "--conditional_pixel_values_path", assets / "cond.txt", "--save_img_path", tmp_path,
                    "--enable_tiling", *FAST)
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
                    "--save_memory", "--save_img_path", tmp_path, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.glob("*.mp4"))
    assert names == [f"EulerAncestralDiscrete_0_gs7.5_s3{s}.mp4" for s in ("", "_i0", "_i1", "_i2")]
    # every output, the grid included, has its record beside it
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [n.replace(".mp4", ".json") for n in names]
    grid, _ = read_video(tmp_path / names[0])
    assert grid.shape[1:3] == (66, 98)  # 2x2 grid of 32x48 with 1-pixel borders
    image = sample("--model_path", assets / "pipe", "--text_prompt", "one", "--conditional_pixel_values_path",
                   assets / "a.png", "--save_img_path", tmp_path / "img", "--num_frames", "1",
                   "--num_sampling_steps", "2", "--max_sequence_length", "24")
    assert image.returncode == 0, image.stderr[-3000:]
    assert sorted(p.suffix for p in (tmp_path / "img").iterdir()) == [".json", ".png"]


@pytest.mark.dist  # two processes: `make test-dist`
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


def alone_and_sequence_parallel(args: list, tmp_path: Path):
    """`soraplan sample ARGS` in one process (into one/) and with --sp on two (into sp/), one thread
    each (torchrun's default: the same float summation order); the --sp run's result."""
    one_thread = {"OMP_NUM_THREADS": "1"}
    single = sample(*args, "--save_img_path", tmp_path / "one", env=one_thread)
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = sample(*args, "--sp", "--save_img_path", tmp_path / "sp", env=one_thread,
                      launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    return parallel


@pytest.mark.dist  # two processes: `make test-dist`
@pytest.mark.parametrize("num_frames,exact", [(13, True), (9, False)])
def test_sequence_parallel_matches_one_process(assets, tmp_path, num_frames, exact):
    """13 frames = 4 latent frames split 2 + 2; 9 frames = 3 latent frames, padded to 4 and masked."""
    args = ["--model_path", assets / "pipe", "--text_prompt", "a red circle", "--conditional_pixel_values_path",
            assets / "a.png", "--crf", "0", *FAST, "--num_frames", num_frames]
    parallel = alone_and_sequence_parallel(args, tmp_path)
    assert "[rank 1]" not in parallel.stdout  # rank 0 writes
    name = "EulerAncestralDiscrete_0_gs7.5_s3.mp4"
    a = read_video(tmp_path / "one" / name)[0].astype(int)
    b = read_video(tmp_path / "sp" / name)[0].astype(int)
    if exact:
        assert np.array_equal(a, b)
    else:  # the masked padding changes float summation order only
        assert np.abs(a - b).mean() < 0.05 and np.abs(a - b).max() <= 8


@pytest.mark.dist  # two processes, ~40 s: `make test-dist`
def test_cfg_parallel_matches_one_process(assets, tmp_path):
    """Two processes, one CFG half each; also with the step cache, whose decisions the ranks share."""
    args = ["--model_path", assets / "pipe", "--text_prompt", "a red circle", "--conditional_pixel_values_path",
            assets / "a.png", "--crf", "0", *FAST, "--num_frames", "13", "--num_sampling_steps", "6"]
    one_thread = {"OMP_NUM_THREADS": "1"}
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
    name = "EulerAncestralDiscrete_0_gs7.5_s6.mp4"
    for extra in ([], ["--cache_threshold", "1.5"]):
        folder = tmp_path / ("cache" if extra else "plain")
        single = sample(*args, *extra, "--save_img_path", folder / "one", env=one_thread)
        assert single.returncode == 0, single.stderr[-3000:]
        parallel = sample(*args, *extra, "--cfg_parallel", "--save_img_path", folder / "cfg", env=one_thread,
                          launcher=two)
        assert parallel.returncode == 0, parallel.stderr[-3000:]
        assert "[rank 1]" not in parallel.stdout  # rank 0 of the pair writes
        if extra:  # the same evaluations were skipped
            counts = [line.split("(i2v, ")[1].split(" transformer")[0] for line in (single.stdout, parallel.stdout)]
            assert counts[0] == counts[1] and counts[0] != "6/6", counts
        a = read_video(folder / "one" / name)[0].astype(int)
        b = read_video(folder / "cfg" / name)[0].astype(int)
        # batch 1 vs batch 2 changes float summation order only (as the padded --sp case above)
        assert np.abs(a - b).mean() < 0.05 and np.abs(a - b).max() <= 8, (np.abs(a - b).mean(), np.abs(a - b).max())


@pytest.mark.dist  # four processes: `make test-dist`
def test_sequence_and_cfg_parallel_together_on_four_processes(assets, tmp_path):
    """Even ranks: the unconditional half, odd ranks: the conditional one, each split over 2 ranks."""
    args = ["--model_path", assets / "pipe", "--text_prompt", "a red circle", "--conditional_pixel_values_path",
            assets / "a.png", "--crf", "0", *FAST, "--num_frames", "13"]
    one_thread = {"OMP_NUM_THREADS": "1"}
    single = sample(*args, "--save_img_path", tmp_path / "one", env=one_thread)
    assert single.returncode == 0, single.stderr[-3000:]
    both = sample(*args, "--sp", "--cfg_parallel", "--save_img_path", tmp_path / "both", env=one_thread,
                  launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "4", "-m"])
    assert both.returncode == 0, both.stderr[-3000:]
    assert "[rank 0]" in both.stdout and "[rank 1]" not in both.stdout
    name = "EulerAncestralDiscrete_0_gs7.5_s3.mp4"
    a = read_video(tmp_path / "one" / name)[0].astype(int)
    b = read_video(tmp_path / "both" / name)[0].astype(int)
    assert np.abs(a - b).mean() < 0.05 and np.abs(a - b).max() <= 8


@pytest.mark.dist  # two processes: `make test-dist`
def test_cfg_parallel_needs_pairs(assets, tmp_path):
    result = sample("--model_path", assets / "pipe", "--text_prompt", "p", "--cfg_parallel", "--sp",
                    "--save_img_path", tmp_path, *FAST, env={"OMP_NUM_THREADS": "1"},
                    launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert result.returncode != 0
    assert "--sp with --cfg_parallel needs at least 4 processes" in result.stderr  # (torchrun adds its own report)
    unguided = sample("--model_path", assets / "pipe", "--text_prompt", "p", "--cfg_parallel", "--guidance_scale",
                      "1", "--save_img_path", tmp_path, *FAST, env={"OMP_NUM_THREADS": "1"},
                      launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert unguided.returncode != 0 and "soraplan/cli" not in unguided.stderr  # torchrun's own traceback only
    assert ("soraplan sample: error: --cfg_parallel splits classifier-free guidance over two processes, but this "
            "run has no unconditional pass to split (guidance 1): drop --cfg_parallel") in unguided.stderr
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model_path", "/no/such/model"], "--model_path /no/such/model: no such folder"),
        (["--num_frames", "10"], "num_frames 10 is not 4k+1"),
        (["--conditional_pixel_values_path", "missing.png"], "does not exist"),
        (["--sp"], "--sp needs several processes"),
        (["--conditional_pixel_values_indices", "0,x"], "integers"),
        (["--noise_strength", "3"], "noise_strength"),
        (["--sample_method", "Foo"], "invalid choice: 'Foo'"),
        (["--mask_type", "v2v"], "invalid choice: 'v2v'"),
        (["--num_sampling_steps", "0"], "--num_sampling_steps must be at least 1"),
        (["--cache_threshold", "-1"], "--cache_threshold must be >= 0"),
        (["--model_type", "t2v"], "holds an I2V (inpaint) transformer, not t2v: use --model_type inpaint"),
        (["--conditional_pixel_values_path", "PROMPT_MISMATCH"], "2 lines for 1 prompts"),
        (["--conditional_pixel_values_path", "SHORT_VIDEO", "--mask_type", "random_temporal"],
         "has 5 frames; 9 are needed"),
        (["--conditional_pixel_values_path", "IMAGE", "--conditional_pixel_values_indices", "0,3"],
         "1 images but 2 frame indices"),
        (["--conditional_pixel_values_path", "IMAGE", "--max_hxw", "500"], "smaller than 32x32"),
        (["--conditional_pixel_values_path", "CORRUPT_VIDEO"], "cannot decode"),
        (["--conditional_pixel_values_path", "CORRUPT_IMAGE"], "cannot read image"),
        # long videos (segments of 9 frames here)
        (["--num_frames", "26", "--segment_frames", "9"], "num_frames 26 is not 4k+1"),
        (["--num_frames", "25", "--segment_frames", "9", "--overlap", "3"], "less than the segment's 3 latent frames"),
        (["--num_frames", "25", "--segment_frames", "9", "--conditional_pixel_values_path", "IMAGE",
          "--conditional_pixel_values_indices", "30"], "keyframe index 30 lies outside the 25-frame video"),
        (["--segment_frames", "10"], "--segment_frames 10 is not 4k+1"),
        (["--extend", "0"], "--extend must be at least 1"),
        (["--storyboard", "STORYBOARD"], "give --storyboard (prompts with frame counts) or --text_prompt, not both"),
    ],
)
def test_user_mistakes(assets, tmp_path, args, message):
    out = tmp_path / "out"
    base = {"--model_path": str(assets / "pipe"), "--text_prompt": "p", "--save_img_path": str(out)}
    mismatch = tmp_path / "two_lines.txt"
    mismatch.write_text(f"{assets / 'a.png'}\n{assets / 'b.png'}\n")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 64)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "story.json").write_text('[{"prompt": "a", "num_frames": 9}]')
    stand_ins = {"CORRUPT_VIDEO": tmp_path / "corrupt.mp4", "CORRUPT_IMAGE": tmp_path / "corrupt.png",
                 "STORYBOARD": tmp_path / "story.json",
                 "PROMPT_MISMATCH": mismatch, "SHORT_VIDEO": assets / "short" / "clip000.mp4", "IMAGE": assets / "a.png"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = str(stand_ins.get(value, value))
    flat = [x for kv in base.items() for x in kv] + [a for a in args if a in ("--sp",)]
    defaults = [x for flag, value in (("--num_sampling_steps", "2"), ("--num_frames", "9")) if flag not in args
                for x in (flag, value)]
    result = sample(*flat, "--max_sequence_length", "24", *defaults)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error" in line]) == 1
    assert not out.exists() or not list(out.iterdir())  # nothing half-written


def test_long_video_with_a_prompt_per_segment_streams_one_mp4_and_replays(assets, tmp_path):
    """--extend 1 on segments of 9 frames: 9 + 4 = 13 frames in two segments, one prompt each; the sidecar
    records the segments and the frames' hash, and --from_json regenerates the same frames."""
    args = ["--model_path", assets / "pipe", "--conditional_pixel_values_path", assets / "a.png", "--segment_frames",
            9, "--extend", 1, "--num_sampling_steps", 2, "--max_sequence_length", 24, "--prompt_template", "{}"]
    result = sample(*args, "--text_prompt", "a red circle | a blue circle", "--save_img_path", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "segment 2 of 2" in result.stdout
    (video,) = (tmp_path / "out").glob("*.mp4")
    assert video.name == "EulerAncestralDiscrete_0_f13_s2.mp4"
    assert read_video(video)[0].shape == (13, 64, 96, 3)
    record = json.loads(video.with_suffix(".json").read_text())
    segments = record["long_video"]["segments"]
    assert [(s["start"], s["num_frames"], s["prompt"]) for s in segments] == [(0, 9, "a red circle"),
                                                                              (4, 9, "a blue circle")]
    assert [s["mask_type"] for s in segments] == ["i2v", "continuation"] and record["frames_sha256"]
    assert record["long_video"]["anchor"] is False and not segments[1]["anchored"]  # the default for this model
    replay = sample("--from_json", video.with_suffix(".json"), "--save_img_path", tmp_path / "replay")
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout

    story = tmp_path / "story.json"
    story.write_text(json.dumps([{"prompt": "a red circle", "num_frames": 9}, {"prompt": "a blue circle",
                                                                                "num_frames": 4}]))
    told = sample(*[a for a in args if a not in ("--extend", 1)], "--storyboard", story,
                  "--save_img_path", tmp_path / "story")
    assert told.returncode == 0, told.stderr[-3000:]
    (story_video,) = (tmp_path / "story").glob("*.mp4")  # the same video: the storyboard says the same
    assert json.loads(story_video.with_suffix(".json").read_text())["frames_sha256"] == record["frames_sha256"]


@pytest.mark.slow
def test_long_video_is_the_same_alone_and_sequence_parallel(assets, tmp_path):
    """29 frames in 13-frame segments starting at 0, 8 and 16: every segment is 4 latent frames, split 2 + 2
    over the two ranks with no padding, so the video is bit-identical (a shorter last segment would be padded
    and masked, which moves float sums: test_sequence_parallel_matches_one_process bounds that case)."""
    args = ["--model_path", assets / "pipe", "--text_prompt", "a red circle", "--conditional_pixel_values_path",
            assets / "a.png", "--crf", "0", *FAST, "--num_frames", 29, "--segment_frames", 13, "--anchor"]
    alone_and_sequence_parallel(args, tmp_path)
    name = "EulerAncestralDiscrete_0_f29_s3.mp4"
    record = json.loads((tmp_path / "sp" / name).with_suffix(".json").read_text())
    assert [s["num_frames"] for s in record["long_video"]["segments"]] == [13, 13, 13]
    assert np.array_equal(read_video(tmp_path / "one" / name)[0], read_video(tmp_path / "sp" / name)[0])


@pytest.mark.slow
def test_an_anchored_long_video_of_a_reference_frame_model_with_sp(assets, tmp_path):
    """A model trained with a reference frame, anchored by default: its anchored segments are one latent
    frame longer (13 frames: 4 latent frames and the reference, padded to 6 over two ranks and masked),
    the video the one a single process makes up to float summation order."""
    from soraplan.pipelines import load_pipeline

    pipe = load_pipeline(str(assets / "pipe"))
    pipe.transformer.register_to_config(reference_frame=True)
    pipe.save_pretrained(tmp_path / "reference_pipe")
    args = ["--model_path", tmp_path / "reference_pipe", "--text_prompt", "a red circle",
            "--conditional_pixel_values_path", assets / "a.png", "--crf", "0", *FAST, "--num_frames", 29,
            "--segment_frames", 13]
    alone_and_sequence_parallel(args, tmp_path)
    name = "EulerAncestralDiscrete_0_f29_s3.mp4"
    record = json.loads((tmp_path / "sp" / name).with_suffix(".json").read_text())
    assert record["long_video"]["anchor"] is True and record["arguments"]["anchor"] is True
    assert [s["anchor_layout"] for s in record["long_video"]["segments"]] == [None, "reference frame", "reference frame"]
    a = read_video(tmp_path / "one" / name)[0].astype(int)
    b = read_video(tmp_path / "sp" / name)[0].astype(int)
    assert a.shape == b.shape == (29, 64, 96, 3)
    assert np.abs(a - b).mean() < 0.1 and np.abs(a - b).max() <= 16


@pytest.mark.dist  # two processes: `make test-dist`
def test_long_videos_are_the_same_alone_and_over_ddp(assets, tmp_path):
    """Two prompts, each a 17-frame video of two 9-frame segments, on two processes (one prompt each):
    every long video is the one a single process makes with the same seed."""
    prompts, conditions = tmp_path / "prompts.txt", tmp_path / "cond.txt"
    prompts.write_text("a red circle\na blue square\n")
    conditions.write_text(f"{assets / 'a.png'}\n{assets / 'b.png'}\n")
    args = ["--model_path", assets / "pipe", "--text_prompt", prompts, "--conditional_pixel_values_path", conditions,
            "--crf", "0", *FAST, "--num_frames", 17, "--segment_frames", 9]
    one_thread = {"OMP_NUM_THREADS": "1"}
    single = sample(*args, "--save_img_path", tmp_path / "one", env=one_thread)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = sample(*args, "--save_img_path", tmp_path / "two", env=one_thread,
                 launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "[rank 0] prompt 0" in ddp.stdout and "[rank 1] prompt 1" in ddp.stdout, ddp.stdout
    for index in range(2):
        name = f"EulerAncestralDiscrete_{index}_f17_s3.mp4"
        alone, parallel = read_video(tmp_path / "one" / name)[0], read_video(tmp_path / "two" / name)[0]
        assert alone.shape[0] == 17 and np.array_equal(alone, parallel), index
    assert not np.array_equal(read_video(tmp_path / "one" / "EulerAncestralDiscrete_0_f17_s3.mp4")[0],
                              read_video(tmp_path / "one" / "EulerAncestralDiscrete_1_f17_s3.mp4")[0])


def test_text_to_video_model(assets, tmp_path):
    result = sample("--model_type", "t2v", "--model_path", assets / "t2v_pipe", "--text_prompt", "a sunset",
                    "--height", "32", "--width", "48", "--save_img_path", tmp_path, *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    frames, _ = read_video(tmp_path / "EulerAncestralDiscrete_0_gs7.5_s3.mp4")
    assert frames.shape == (9, 32, 48, 3)
    refused = sample("--model_type", "t2v", "--model_path", assets / "t2v_pipe", "--text_prompt", "a sunset",
                     "--conditional_pixel_values_path", assets / "a.png", "--save_img_path", tmp_path / "x", *FAST)
    assert refused.returncode == 2 and "takes no conditioning images" in refused.stderr


def test_gpu_script_runs_on_cpu_with_a_tiny_model(assets, tmp_path):
    """The mirrored reference script, pointed at a tiny pipeline folder, 2 CPU processes, 3 prompts."""
    env = {"MODEL_PATH": str(assets / "pipe"), "PROMPTS": str(assets / "prompts.txt"), "CONDITIONS": str(assets / "cond.txt"),
           "NPROC": "2", "SAVE_PATH": str(tmp_path), "MASTER_PORT": "29631",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = Path(__file__).resolve().parents[2] / "scripts/text_condition/gpu/sample_inpaint_v1_3.sh"
    result = subprocess.run(["bash", str(script), "--num_frames", "9", "--height", "32", "--width", "48",
                             "--num_sampling_steps", "2", "--max_sequence_length", "24", "--dtype", "fp32"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == [f"EulerAncestralDiscrete_{i}_gs7.5_s2.mp4" for i in range(3)]
