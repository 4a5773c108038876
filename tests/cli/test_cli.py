"""The `soraplan` command as a user runs it: real processes, real folders, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from soraplan.models import build_inpaint

from ..conftest import require_parity_dir


def soraplan(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "soraplan", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_inspect_reference_fixture_folder():
    folder = require_parity_dir() / "transformer_inpaint"
    result = soraplan("inspect", folder)
    assert result.returncode == 0, result.stderr
    assert "OpenSoraInpaint (config _class_name: OpenSoraInpaint_v1_3)" in result.stdout
    assert "dense x4 (0, 1, 30, 31), single-skip x14, group-skip x14 (Skiparse k=4)" in result.stdout
    assert "every key and shape matches" in result.stdout


def test_inspect_reports_a_broken_folder(tmp_path):
    build_inpaint("tiny").save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["scale_shift_table"]
    save_file(state, weights)
    result = soraplan("inspect", tmp_path, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["missing"] == ["scale_shift_table"] and not report["ok"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["inspect", "no/such/folder"], "has no config.json"),
        (["demo", "--num_frames", "10"], "--num_frames 10 is not 4k+1; use e.g. 9"),
        (["demo", "--height", "100"], "multiples of 16"),
        (["demo", "--image", "missing.png", "--prompt", "x"], "missing.png does not exist"),
        (["demo", "--image", "a.png"], "need --prompt"),
        (["demo", "--prompt", "x", "--indices", "0,4"], "--indices gives the frame of each --image"),
        (["demo", "--image", "a.png", "--video", "b.mp4", "--prompt", "x"], "not both"),
        (["eval", "--tasks", "dance"], "--tasks takes i2v, transition, continuation"),
        (["eval", "--data", "no/such/data.txt"], "does not exist"),
        (["eval", "--sets", "moon"], "--sets takes world, drawn"),
        (["data", "synth", "-o", "w", "--colour_jitter", "99"], "--colour_jitter must lie in [0, 64]"),
        (["data", "synth", "-o", "w", "--style", "drawn", "--colour_jitter", "9"], "--colour_jitter is for the world style"),
        (["demo", "--cache_threshold", "-1"], "--cache_threshold must be >= 0"),
        (["demo", "--sample_method", "Foo"], "unknown --sample_method 'Foo'"),
        (["eval", "--cache_threshold", "-0.5"], "--cache_threshold must be >= 0"),
        (["serve", "--max_queue", "0"], "--max_queue must be at least 1"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(args, message, tmp_path):
    result = soraplan(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_config_in_folder_is_a_user_error(tmp_path):
    build_inpaint("tiny").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["attention_head_dim"] = 8
    config["cross_attention_dim"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = soraplan("inspect", tmp_path)
    assert result.returncode == 2 and "divisible by 6" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value,expected", [(None, 0), ("0", 0), ("1", 1)])
def test_keep_freed_memory_only_on_request(monkeypatch, value, expected):
    import soraplan.cli.main as cli_main

    calls = []
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: calls.append(True))
    if value is None:
        monkeypatch.delenv("SORAPLAN_KEEP_FREED_MEMORY", raising=False)
    else:
        monkeypatch.setenv("SORAPLAN_KEEP_FREED_MEMORY", value)
    assert cli_main.main(["inspect", "/nonexistent-folder"]) == 2  # a one-line user error, after start-up
    assert len(calls) == expected
