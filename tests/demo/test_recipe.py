"""The demo-model recipe: latent statistics, the seeded text encoder, assembling, and the whole script."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soraplan.demo.recipe import assemble_pipeline, write_examples, write_latent_stats
from soraplan.demo.text_encoder import MAX_TOKENS, build_text_encoder, save_text_encoder
from soraplan.demo.world import BACKGROUNDS, COLOURS, DIRECTIONS, SHAPES, Scene, write_world
from soraplan.models import WFVAE, build_inpaint
from soraplan.pipelines import load_pipeline

from ..conftest import ROOT, randomize_


def tiny_vae() -> WFVAE:
    return randomize_(WFVAE(base_channels=8, encoder_energy_flow_hidden_size=8, decoder_energy_flow_hidden_size=8,
                            norm_type="layernorm"), std=0.05).eval()


def test_latent_stats_make_training_latents_standard(tmp_path):
    write_world(tmp_path / "world", 6, seed=5, frames=9, size=32)
    tiny_vae().save_pretrained(tmp_path / "vae")
    write_latent_stats(tmp_path / "vae", tmp_path / "world" / "videos")
    vae = WFVAE.from_pretrained(tmp_path / "vae")
    assert vae.config.shift != [0.0] * 8 and vae.config.scale != [0.18215] * 8
    from soraplan.data import read_video

    clips = [torch.from_numpy(read_video(p)[0]).permute(3, 0, 1, 2).float() / 127.5 - 1
             for p in sorted((tmp_path / "world" / "videos").glob("*.mp4"))]
    with torch.no_grad():
        z = torch.cat([vae.normalize_latents(vae.encode(c[None]).mean) for c in clips])  # (N, 8, t, h, w)
    per_channel = z.transpose(0, 1).flatten(1)
    assert per_channel.mean(1).abs().max() < 1e-4
    assert (per_channel.std(1) - 1).abs().max() < 1e-4


def test_text_encoder_is_reproducible_and_fits_every_caption(tmp_path):
    a, tokenizer = build_text_encoder(seed=3)
    b, _ = build_text_encoder(seed=3)
    c, _ = build_text_encoder(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.shared.weight, c.shared.weight)
    longest = max((Scene(shape, colour, direction, background, gradient, 1, (0, 0), 0).caption
                   for shape, colour, direction, background, gradient
                   in itertools.product(SHAPES, COLOURS, DIRECTIONS, BACKGROUNDS, (False, True))), key=len)
    assert len(tokenizer(longest)["input_ids"]) <= MAX_TOKENS
    folder = save_text_encoder(tmp_path / "te", seed=3)
    from soraplan.models.text import load_text_encoder

    encoder, loaded_tokenizer = load_text_encoder(str(folder))
    assert torch.equal(encoder.shared.weight, a.shared.weight)
    assert loaded_tokenizer.model_max_length == MAX_TOKENS


def test_assembled_parts_load_and_run_as_one_pipeline(tmp_path):
    build_inpaint("tiny", caption_channels=64).save_pretrained(tmp_path / "transformer")
    tiny_vae().save_pretrained(tmp_path / "vae")
    save_text_encoder(tmp_path / "te")
    assemble_pipeline(tmp_path / "pipeline", tmp_path / "transformer", tmp_path / "vae", tmp_path / "te")
    assert json.loads((tmp_path / "pipeline" / "model_index.json").read_text())["_class_name"] == "OpenSoraInpaintPipeline"
    for part in ("transformer", "vae"):  # the folders it was built from stay out of the shipped configs
        assert "_name_or_path" not in json.loads((tmp_path / "pipeline" / part / "config.json").read_text())
    pipe = load_pipeline(str(tmp_path / "pipeline"))
    out = pipe("a red circle", conditions=[torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()], num_frames=5,
               height=32, width=32, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.videos.shape == (1, 5, 32, 32, 3)


@pytest.mark.parametrize("motions", ["axis", "diagonal"])
def test_examples_name_files_that_exist(tmp_path, motions):
    folder = write_examples(tmp_path / "examples", motions=motions)
    examples = json.loads((folder / "examples.json").read_text())
    assert [e["task"] for e in examples] == ["i2v", "transition", "continuation"]
    for example in examples:
        assert all((folder / name).is_file() for name in example["conditions"])
        assert (" and to the " in example["prompt"]) == (motions == "diagonal")


@pytest.mark.slow
def test_the_recipe_script_runs_end_to_end(tmp_path):
    """scripts/demo/train_demo_model.sh at toy sizes: every step runs and a loadable pipeline comes out."""
    python = Path(sys.executable)
    env = {**os.environ, "OUT": str(tmp_path / "run"), "N_TRAIN": "8", "N_EVAL": "2", "VAE_STEPS": "2",
           "I2V_STEPS": "2", "I2V_MORE_STEPS": "2", "GUIDANCE": "2.5", "EVAL_CLIPS": "1", "EVAL_STEPS": "2", "SORAPLAN": f"{python} -m soraplan",
           "PYTHON": str(python)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo" / "train_demo_model.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "i2v_shape_and_colour_kept_rate" in result.stdout
    pipe = load_pipeline(str(tmp_path / "run" / "pipeline"))
    assert pipe.transformer.config.num_layers == 8
    assert pipe.sampling_settings() == (100, 2.5)  # the recipe's guidance travels with the pipeline
    assert pipe.sampling_settings(None, None, "transition") == (100, 2.0)  # and its transitions' own
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["summary"]["world"]["clips"] == 1
    stages = (tmp_path / "run" / "stage_times.txt").read_text().split()[::3]
    assert stages == ["data", "vae", "latents", "text", "i2v", "i2v_more", "assemble", "eval"]
    # the second I2V run starts from the first's EMA weights, and the pipeline holds its result
    shipped = load_file(tmp_path / "run" / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
    second = load_file(tmp_path / "run" / "i2v_more_run" / "model_ema" / "diffusion_pytorch_model.safetensors")
    assert shipped.keys() == second.keys() and all(torch.equal(shipped[k], second[k]) for k in shipped)
    # one stage at a time: finished work is kept (the VAE resumes at its last step and stops)
    again = subprocess.run(["bash", str(ROOT / "scripts" / "demo" / "train_demo_model.sh"), "data", "vae"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "run" / "stage_times.txt").read_text().split()[::3][-2:] == ["data", "vae"]
    wrong = subprocess.run(["bash", str(ROOT / "scripts" / "demo" / "train_demo_model.sh"), "vea"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown stage 'vea'" in wrong.stderr


@pytest.mark.slow
def test_the_lora_recipe_script_runs_end_to_end(tmp_path):
    """scripts/demo/train_demo_lora.sh at toy sizes on the embedded model: the adapter trains, the
    three evaluations run, and SHIP=1 would install it beside the model (here into a copy of the tree)."""
    python = Path(sys.executable)
    tree = tmp_path / "tree"  # SHIP writes into the tree the script lives in: a copy of the parts it needs
    (tree / "scripts").mkdir(parents=True)
    shutil.copytree(ROOT / "scripts" / "demo", tree / "scripts" / "demo")
    from soraplan.demo.assets import demo_pipeline_path

    env = {**os.environ, "OUT": str(tmp_path / "run"), "N_TRAIN": "8", "STEPS": "2", "EVAL_CLIPS": "1",
           "NEW_TASKS": "i2v", "EVAL_TASKS": "i2v", "EVAL_STEPS": "2", "BASE": str(demo_pipeline_path()), "SHIP": "1",
           "SORAPLAN": f"{python} -m soraplan", "PYTHON": str(python)}
    result = subprocess.run(["bash", str(tree / "scripts" / "demo" / "train_demo_lora.sh")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stages = (tmp_path / "run" / "stage_times.txt").read_text().split()[::3]
    assert stages == ["data", "lora", "eval"]
    for name in ("diagonal_base", "diagonal_lora", "axis_lora"):
        summary = json.loads((tmp_path / "run" / f"eval_{name}.json").read_text())["summary"]
        assert summary["world"]["clips"] == 1 and "i2v_direction_rate" in summary["drawn"]
    shipped = tree / "src" / "soraplan" / "assets" / "demo" / "loras" / "diagonal"
    trained = load_file(tmp_path / "run" / "run" / "lora_ema" / "pytorch_lora_weights.safetensors")
    installed = load_file(shipped / "pytorch_lora_weights.safetensors")  # the measured SCALE (0.8) folded in
    assert installed.keys() == trained.keys()
    for key, value in trained.items():
        torch.testing.assert_close(installed[key], value * 0.8 if ".lora_B." in key else value)
    examples = json.loads((shipped / "examples.json").read_text())
    assert all((shipped / name).is_file() for example in examples for name in example["conditions"])
    train = json.loads((tmp_path / "run" / "world_train" / "annotations.json").read_text())
    assert {item["scene"]["direction"] for item in train} & {"up-right", "up-left", "down-right", "down-left"}


@pytest.mark.parametrize("part", ["transformer", "vae", "text_encoder"])
def test_the_embedded_pipeline_is_small_and_real(part):
    from soraplan.demo.assets import demo_pipeline_path

    folder = demo_pipeline_path()
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total <= 40 * 2**20
    assert list((folder / part).glob("*.safetensors"))
    assert "_name_or_path" not in json.loads((folder / part / "config.json").read_text())

