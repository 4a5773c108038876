"""Model flags as Hub ids, as users run them: the release's ids resolved from a Hugging Face cache laid out
as huggingface_hub writes it (tiny stand-in models under the real names), `HF_HUB_OFFLINE=1`, no network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soraplan.data import read_video

from ..conftest import build_tiny_pipeline, write_image
from ..test_hub import folder_files, lay_out_cache

FAST = ["--num_frames", "9", "--num_sampling_steps", "2", "--max_sequence_length", "24", "--seed", "3",
        "--text_prompt", "a red circle", "--crf", "0"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A cache holding LanguageBind/Open-Sora-Plan-v1.3.0/{any93x640x640_i2v, vae}, google/mt5-xxl and a
    pipeline repository; plus the same models as plain folders."""
    root = tmp_path_factory.mktemp("hub")
    pipe = root / "pipe"
    build_tiny_pipeline().save_pretrained(pipe)
    encoder = root / "encoder"  # the text encoder as the release's scripts expect it: model + tokenizer
    for part in ("text_encoder", "tokenizer"):
        for name, path in folder_files(pipe / part).items():
            (encoder / name).parent.mkdir(parents=True, exist_ok=True)
            (encoder / name).write_bytes(path.read_bytes())
    cache = root / "cache"
    lay_out_cache(cache, "LanguageBind/Open-Sora-Plan-v1.3.0",
                  {**folder_files(pipe / "transformer", "any93x640x640_i2v/"), **folder_files(pipe / "vae", "vae/")})
    lay_out_cache(cache, "google/mt5-xxl", {**folder_files(encoder), "tf_model.h5": "never read"})
    lay_out_cache(cache, "someone/tiny-i2v", folder_files(pipe), refs=("main", "v1"))
    write_image(root / "first.png", 64, 64, seed=1)
    return root


def soraplan(*args, cache: Path, timeout=600):
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "soraplan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def only_video(folder: Path) -> np.ndarray:
    (path,) = folder.glob("*.mp4")
    return read_video(path)[0]


@pytest.mark.slow  # two samplings of the release layout, ~30 s: `make test-slow`
def test_release_ids_sample_exactly_as_local_folders(release, tmp_path):
    cache = release / "cache"
    condition = ["--conditional_pixel_values_path", release / "first.png"]
    hub = soraplan("sample", "--model_path", "LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v",
                   "--ae_path", "LanguageBind/Open-Sora-Plan-v1.3.0/vae", "--text_encoder_name_1", "google/mt5-xxl",
                   *condition, *FAST, "--save_img_path", tmp_path / "hub", cache=cache)
    assert hub.returncode == 0, hub.stderr[-3000:]
    local = soraplan("sample", "--model_path", release / "pipe" / "transformer", "--ae_path", release / "pipe" / "vae",
                     "--text_encoder_name_1", release / "encoder", *condition, *FAST,
                     "--save_img_path", tmp_path / "local", cache=cache)
    assert local.returncode == 0, local.stderr[-3000:]
    assert np.array_equal(only_video(tmp_path / "hub"), only_video(tmp_path / "local"))
    # the record names the models by Hub id and the commit they came from, and replays from them offline
    (sidecar,) = (tmp_path / "hub").glob("*.json")
    models = json.loads(sidecar.read_text())["models"]
    commit = hashlib.sha1(b"LanguageBind/Open-Sora-Plan-v1.3.0").hexdigest()  # lay_out_cache's
    assert {k: models["model_path"][k] for k in ("hub_id", "subfolder", "revision", "commit")} == {
        "hub_id": "LanguageBind/Open-Sora-Plan-v1.3.0", "subfolder": "any93x640x640_i2v", "revision": "main",
        "commit": commit}
    assert models["text_encoder_name_1"]["hub_id"] == "google/mt5-xxl" and models["ae_path"]["subfolder"] == "vae"
    replay = soraplan("sample", "--from_json", sidecar, cache=cache)
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout
    # a pipeline repository, with --subfolder-less id and --revision
    pipeline = soraplan("sample", "--model_path", "someone/tiny-i2v", "--revision", "v1", *condition, *FAST,
                        "--save_img_path", tmp_path / "pipeline", cache=cache)
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    assert np.array_equal(only_video(tmp_path / "pipeline"), only_video(tmp_path / "local"))


def in_process(capsys, monkeypatch, *args, cache: Path) -> tuple[int, str]:
    """`soraplan ...` in this process, offline on ``cache``: every mistake below ends before a model loads,
    so no interpreter start-up is paid per case (huggingface_hub reads its settings at import, hence the
    constants are set as well as the environment)."""
    from huggingface_hub import constants

    from soraplan.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    code = main(list(map(str, args)))
    return code, capsys.readouterr().err


def test_subfolder_flag_and_errors_are_one_line(release, tmp_path, capsys, monkeypatch):
    cache = release / "cache"
    code, err = in_process(capsys, monkeypatch, "sample", "--model_path", "LanguageBind/Open-Sora-Plan-v1.3.0",
                           "--subfolder", "any93x640x640_i2v", "--text_prompt", "x", cache=cache)
    assert code == 2
    assert err.strip().splitlines() == [
        "soraplan sample: error: --model_path LanguageBind/Open-Sora-Plan-v1.3.0: a transformer folder, not a "
        "pipeline: also give --ae_path and --text_encoder_name_1 (the release's: "
        "LanguageBind/Open-Sora-Plan-v1.3.0/vae and google/mt5-xxl)"]
    cases = {
        ("sample", "--model_path", "LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640", "--ae_path", "a/b",
         "--text_encoder_name_1", "c/d", "--text_prompt", "x"): "no folder 'any93x640x640'",
        ("sample", "--model_path", "someone/tiny-i2v@v2", "--text_prompt", "x"): "not in the Hugging Face cache",
        ("serve", "--pipeline", "LanguageBind/Open-Sora-Plan-v1.3.0/vae"): "not a pipeline folder",
        ("demo", "--pipeline", "nobody/nothing"): "HF_HUB_OFFLINE is set",
        ("download",): "--i2v LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v",
    }
    for args, expected in cases.items():
        code, err = in_process(capsys, monkeypatch, *args,
                               cache=cache if args != ("download",) else tmp_path / "empty")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and expected in lines[0], (args, err[-2000:])
    # the same mistake as users meet it: a process of its own, no traceback
    result = soraplan("demo", "--pipeline", "nobody/nothing", cache=cache)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "HF_HUB_OFFLINE is set" in lines[0], result.stderr


def test_download_prints_a_sample_line_that_works(release, tmp_path):
    cache = release / "cache"
    fetched = soraplan("download", cache=cache)  # i2v, vae and text encoder: all cached, so nothing to fetch
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    command = " ".join(fetched.stdout.split("\n\n", 1)[1].replace("\\\n", " ").split())
    assert command.startswith("soraplan sample --model_path LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v")
    assert "--ae_path LanguageBind/Open-Sora-Plan-v1.3.0/vae --text_encoder_name_1 google/mt5-xxl" in command
    import shlex

    args = shlex.split(command)[1:]
    args[args.index("first_frame.png")] = str(release / "first.png")
    args = [a for a in args if a not in ("--num_frames", "93", "--height", "352", "--width", "640")]
    result = soraplan(*args, "--num_frames", "9", "--height", "64", "--width", "64", "--num_sampling_steps", "2",
                      "--max_sequence_length", "24", "--save_img_path", tmp_path, cache=cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_video(tmp_path).shape == (9, 64, 64, 3)


def test_trainer_takes_the_release_by_hub_id(release, tmp_path):
    from ..conftest import make_videos
    from ..training.test_train_i2v import annotate

    data = annotate(tmp_path / "train", make_videos(tmp_path / "train", 2, frames=12, size=32, seed=0))
    config = Path(__file__).resolve().parents[2] / "scripts" / "train_configs" / "mask_config.yaml"
    common = ["train", "--data", data, "--mask_config", config, "--num_frames", 9, "--max_height", 32,
              "--max_width", 32, "--hw_stride", 16, "--train_fps", 8, "--min_num_frames", 9,
              "--model_max_length", 32, "--max_train_steps", 1, "--train_batch_size", 1,
              "--ae_path", "LanguageBind/Open-Sora-Plan-v1.3.0/vae", "--text_encoder_name_1", "google/mt5-xxl"]
    trained = soraplan(*common, "--model", "LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v",
                       "--pretrained", "LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640_i2v",
                       "--output_dir", tmp_path / "out", cache=release / "cache")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (tmp_path / "out" / "model" / "config.json").is_file()
    missing = soraplan(*common, "--model", "LanguageBind/Open-Sora-Plan-v1.3.0/any93x640x640",
                       "--output_dir", tmp_path / "x", cache=release / "cache")
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "no folder 'any93x640x640'" in lines[0], missing.stderr
