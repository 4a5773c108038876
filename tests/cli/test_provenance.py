"""Outputs that say how they were made: the sidecar beside every video, the same record inside the mp4,
`soraplan sample --from_json` making the same frames again, and the caption refiner's prompt on record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from soraplan.data import read_video
from soraplan.provenance import FORMAT, config_sha256, file_sha256, read_record

from ..conftest import build_tiny_pipeline, build_tiny_refiner, write_image

FAST = ["--num_frames", "9", "--height", "64", "--width", "64", "--num_sampling_steps", "3",
        "--max_sequence_length", "24", "--seed", "5", "--crf", "0",  # lossless: decoded frames are the generated ones
        "--prompt_template", "{}"]  # the prompt itself within the tiny text encoder's 24 tokens
NAME = "EulerAncestralDiscrete_0_gs7.5_s3"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    build_tiny_pipeline().save_pretrained(root / "pipe")
    build_tiny_refiner(root / "refiner")
    write_image(root / "first.png", 64, 64, seed=1)
    return root


def sample(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "soraplan", "sample", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)


def test_sidecar_records_the_run_and_from_json_makes_the_same_frames(assets, tmp_path):
    first = tmp_path / "first.png"
    first.write_bytes((assets / "first.png").read_bytes())
    made = sample("--model_path", assets / "pipe", "--text_prompt", "a red circle moves to the right",
                  "--conditional_pixel_values_path", first, "--negative_prompt", "blurry", *FAST,
                  "--save_img_path", tmp_path / "out")
    assert made.returncode == 0, made.stderr[-3000:]
    video, sidecar = tmp_path / "out" / f"{NAME}.mp4", tmp_path / "out" / f"{NAME}.json"
    record = json.loads(sidecar.read_text())
    assert record["format"] == FORMAT and record["prompt"] == "a red circle moves to the right"
    assert record["refined_prompt"] is None and record["negative_prompt"] == "blurry"
    assert record["conditions"] == [{"given": str(first), "path": str(first.resolve()), "sha256": file_sha256(first)}]
    assert record["mask_type"] == "i2v" and record["seed"] == 5
    assert record["sampler"]["steps"] == 3 and record["sampler"]["guidance_scale"] == 7.5
    assert record["video"]["frames"] == 9 and (record["video"]["height"], record["video"]["width"]) == (64, 64)
    assert record["models"]["model_path"] == {"path": str((assets / "pipe").resolve()),
                                              "config_sha256": config_sha256(assets / "pipe")}
    assert record["command"].startswith("soraplan sample --model_path") and "--seed 5" in record["command"]
    assert record["runtime"]["dtype"] == "fp32" and record["soraplan_version"]
    assert read_record(video) == record  # the mp4 carries the same record in its comment

    again = sample("--from_json", sidecar)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "frames identical to the recorded video" in again.stdout
    replayed = tmp_path / "out" / "replay" / f"{NAME}.mp4"  # beside the record, never over the original
    assert np.array_equal(read_video(replayed)[0], read_video(video)[0])
    assert json.loads(replayed.with_suffix(".json").read_text())["frames_sha256"] == record["frames_sha256"]

    variation = sample("--from_json", video, "--seed", "6", "--save_img_path", tmp_path / "var")
    assert variation.returncode == 0, variation.stderr[-3000:]
    assert "with --seed changed" in variation.stdout
    assert json.loads((tmp_path / "var" / f"{NAME}.json").read_text())["seed"] == 6

    first.write_bytes((assets / "pipe" / "model_index.json").read_bytes())  # the input changed since
    changed = sample("--from_json", sidecar)
    assert changed.returncode == 2 and "has changed since the video was made" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1


def run_in_process(capsys, *args) -> tuple[int, str]:
    """`soraplan sample ...` in this process (mistakes end before any model loads: no start-up to pay)."""
    from soraplan.cli.main import main

    code = main(["sample", *map(str, args)])
    return code, capsys.readouterr().err


def test_from_json_refuses_what_it_cannot_replay(tmp_path, capsys):
    (tmp_path / "other.json").write_text('{"name": "not ours"}')
    (tmp_path / "broken.json").write_text("{")
    cases = [
        (["--from_json", tmp_path / "missing.json"], "does not exist"),
        (["--from_json", tmp_path / "other.json"], "is not a soraplan sample record"),
        (["--from_json", tmp_path / "broken.json"], "is not valid JSON"),
        (["--from_json", tmp_path / "other.json", "--text_prompt", "x"], "drop --text_prompt"),
        (["--text_prompt", "x"], "give --model_path"),
    ]
    for args, message in cases:
        code, err = run_in_process(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)


@pytest.mark.slow  # sampling runs with a refiner model, about 30 s: `make test-slow`
def test_caption_refiner_rewrites_the_prompt_the_model_sees(assets, tmp_path):
    prompt = "a red circle moves to the right"
    refined = sample("--model_path", assets / "pipe", "--text_prompt", prompt, "--caption_refiner",
                     assets / "refiner", *FAST, "--save_img_path", tmp_path / "refined")
    assert refined.returncode == 0, refined.stderr[-3000:]
    (line,) = [line for line in refined.stdout.splitlines() if "prompt 0 refined: " in line]
    rewrite = line.split("prompt 0 refined: ", 1)[1]
    assert rewrite and rewrite != prompt
    record = json.loads((tmp_path / "refined" / f"{NAME}.json").read_text())
    assert record["prompt"] == prompt and record["refined_prompt"] == rewrite
    assert record["caption_refiner"]["path"] == str((assets / "refiner").resolve())
    assert rewrite in record["text"]

    direct = sample("--model_path", assets / "pipe", "--text_prompt", rewrite, *FAST, "--save_img_path",
                    tmp_path / "direct")  # the refined words, typed in: the same video
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert np.array_equal(read_video(tmp_path / "refined" / f"{NAME}.mp4")[0],
                          read_video(tmp_path / "direct" / f"{NAME}.mp4")[0])
    plain = sample("--model_path", assets / "pipe", "--text_prompt", prompt, *FAST, "--save_img_path",
                   tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert not np.array_equal(read_video(tmp_path / "plain" / f"{NAME}.mp4")[0],
                              read_video(tmp_path / "direct" / f"{NAME}.mp4")[0])


def test_refiner_and_enhancer_flags_fail_in_one_line(assets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cases = [
        (["--enhance_video", "venhancer"], "--enhance_video is not supported"),
        (["--refine_caption", "--cache_dir", tmp_path / "empty"],  # offline, not cached
         "LanguageBind/Open-Sora-Plan-v1.3.0/prompt_refiner is not in the Hugging Face cache"),
        (["--caption_refiner", assets / "pipe" / "text_encoder"], "not a causal language model"),
    ]
    for args, message in cases:
        code, err = run_in_process(capsys, "--model_path", assets / "pipe", "--text_prompt", "x", *args, *FAST,
                                   "--save_img_path", tmp_path / "out")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing written
