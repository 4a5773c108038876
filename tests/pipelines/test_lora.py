"""LoRA adapters on the pipeline, through its diffusers-style API and `soraplan sample --lora`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from soraplan.data import read_video

from ..conftest import build_tiny_pipeline, randomize_, write_image

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ARGS = dict(prompt="a red circle", num_frames=5, height=32, width=32, num_inference_steps=2, max_sequence_length=16,
            output_type="latent")


def make_adapter(folder, *, rank=4, seed=0, transformer=None):
    """A LoRA file as diffusers writes one: random (non-zero) A and B on the attention projections."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from soraplan.pipelines import OpenSoraInpaintPipeline

    transformer = transformer or build_tiny_pipeline().transformer
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS, init_lora_weights=False)
    transformer.add_adapter(config, adapter_name="new")
    layers = get_peft_model_state_dict(transformer, adapter_name="new")
    OpenSoraInpaintPipeline.save_lora_weights(folder, transformer_lora_layers=layers,
                                              transformer_lora_adapter_metadata=config.to_dict())
    transformer.delete_adapters("new")
    return folder


def latents(pipe) -> torch.Tensor:
    return pipe(**ARGS, generator=torch.Generator().manual_seed(0)).videos


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    return make_adapter(root / "style", seed=1), make_adapter(root / "motion", seed=2, rank=2)


def test_scale_zero_is_the_base_model_and_fusing_equals_loading(adapters):
    style, motion = adapters
    pipe = build_tiny_pipeline()
    base = latents(pipe)
    pipe.load_lora_weights(style, adapter_name="style")
    styled = latents(pipe)
    assert (styled - base).abs().max() > 1e-3  # the adapter changes the video
    pipe.set_adapters(["style"], [0.0])
    assert torch.equal(latents(pipe), base)  # scale 0: exactly the base model
    with warnings.catch_warnings(record=True) as caught:  # a second adapter is supported: no peft warning
        warnings.simplefilter("always")
        pipe.load_lora_weights(motion, adapter_name="motion")
    assert not [w for w in caught if "peft_config" in str(w.message)], [str(w.message) for w in caught]
    pipe.set_adapters(["style", "motion"], [1.0, 0.5])
    both = latents(pipe)
    pipe.fuse_lora(adapter_names=["style", "motion"])
    pipe.unload_lora_weights()
    torch.testing.assert_close(latents(pipe), both, atol=1e-4, rtol=1e-4)  # merged = loaded, up to rounding
    fresh = build_tiny_pipeline()
    assert torch.equal(latents(fresh), base)


def test_adapters_that_do_not_fit_are_one_sentence_errors(adapters, tmp_path):
    from safetensors.torch import load_file, save_file

    from soraplan.models import OpenSoraInpaint

    style, _ = adapters
    pipe = build_tiny_pipeline()
    wider = randomize_(OpenSoraInpaint.from_config(pipe.transformer.config, attention_head_dim=18,
                                                   cross_attention_dim=36))
    other = make_adapter(tmp_path / "other", transformer=wider)
    with pytest.raises(ValueError, match="made for another architecture: transformer_blocks.0.attn1.to_k is"):
        pipe.load_lora_weights(other)
    weights = load_file(style / "pytorch_lora_weights.safetensors")
    key = next(k for k in weights if k.endswith("attn1.to_q.lora_B.weight"))
    broken = {**weights, key: weights[key][:, :2].contiguous()}
    (tmp_path / "broken").mkdir()
    save_file(broken, tmp_path / "broken" / "pytorch_lora_weights.safetensors")
    with pytest.raises(ValueError, match="rank layout broken at transformer_blocks.0.attn1.to_q"):
        pipe.load_lora_weights(tmp_path / "broken")
    (tmp_path / "model").mkdir()
    save_file({"transformer.proj_out.weight": torch.zeros(2, 2)}, tmp_path / "model" / "pytorch_lora_weights.safetensors")
    with pytest.raises(ValueError, match="is not a LoRA weight"):
        pipe.load_lora_weights(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="no pytorch_lora_weights.safetensors there"):
        pipe.load_lora_weights(tmp_path)
    assert not getattr(pipe.transformer, "peft_config", None)  # nothing was injected by a refused adapter


def soraplan(*args):
    return subprocess.run([sys.executable, "-m", "soraplan", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow  # four sampling processes: about a minute
def test_sample_with_lora_records_and_replays_it(adapters, tmp_path):
    style, motion = adapters
    build_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    image = write_image(tmp_path / "first.png", 32, 32, seed=3)
    common = ["sample", "--model_path", tmp_path / "pipe", "--text_prompt", "a red circle", "--num_frames", 5,
              "--height", 32, "--width", 32, "--num_sampling_steps", 3, "--max_sequence_length", 16,
              "--conditional_pixel_values_path", image, "--crf", 0]
    runs = {"base": [], "zero": ["--lora", f"{style}:0"], "styled": ["--lora", style, "--lora", f"{motion}:0.5"]}
    frames = {}
    for name, extra in runs.items():
        result = soraplan(*common, *extra, "--save_img_path", tmp_path / name)
        assert result.returncode == 0, result.stderr[-3000:]
        (video,) = (tmp_path / name).glob("*.mp4")
        frames[name] = read_video(video)[0]
    assert np.array_equal(frames["zero"], frames["base"])
    assert not np.array_equal(frames["styled"], frames["base"])
    (record_path,) = (tmp_path / "styled").glob("*.json")
    record = json.loads(record_path.read_text())
    assert [(a["scale"], len(a["sha256"])) for a in record["models"]["lora"]] == [(1.0, 64), (0.5, 64)]
    replay = soraplan("sample", "--from_json", record_path, "--save_img_path", tmp_path / "replay")
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "frames identical to the recorded video" in replay.stdout
    missing = soraplan(*common, "--lora", tmp_path / "nowhere", "--save_img_path", tmp_path / "x")
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1 and "--lora" in lines[0] and "no adapter at" in lines[0]


def test_lora_merge_writes_a_plain_model_equal_to_load_and_fuse(adapters, tmp_path, capsys):
    from soraplan.cli.main import main
    from soraplan.models import OpenSoraInpaint
    from soraplan.pipelines import load_pipeline

    style, motion = adapters
    build_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    assert main(["lora", "merge", "--model_path", str(tmp_path / "pipe"), "--lora", str(style), "--lora",
                 f"{motion}:0.5", "-o", str(tmp_path / "merged")]) == 0
    merged = load_pipeline(str(tmp_path / "merged"))
    assert not any("lora" in key for key in merged.transformer.state_dict())  # plain weights
    fused = build_tiny_pipeline()
    fused.load_lora_weights(style, adapter_name="a")
    fused.load_lora_weights(motion, adapter_name="b")
    fused.set_adapters(["a", "b"], [1.0, 0.5])
    expected = latents(fused)
    torch.testing.assert_close(latents(merged), expected, atol=1e-4, rtol=1e-4)
    # a transformer folder merges the same way
    build_tiny_pipeline().transformer.save_pretrained(tmp_path / "transformer")
    assert main(["lora", "merge", "--model_path", str(tmp_path / "transformer"), "--lora", str(style), "--lora",
                 f"{motion}:0.5", "-o", str(tmp_path / "merged_t")]) == 0
    alone = OpenSoraInpaint.from_pretrained(tmp_path / "merged_t").state_dict()
    assert all(torch.allclose(alone[k], v, atol=1e-6) for k, v in merged.transformer.state_dict().items())
    capsys.readouterr()
    code = main(["lora", "merge", "--model_path", str(tmp_path / "pipe"), "--lora", str(tmp_path / "nothing"),
                 "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no adapter at" in err[0] and not (tmp_path / "bad").exists()


def test_an_adapter_shipped_beside_the_demo_model_is_named_by_its_folder(tmp_path, monkeypatch):
    """`--lora NAME` means the adapter folder NAME beside the demo model (assets/demo/loras/NAME) when no
    file or folder of that name is where the command runs; an unknown name lists the shipped ones."""
    import soraplan.demo.assets as assets
    from soraplan.pipelines.lora import resolve_lora_specs

    shipped = tmp_path / "loras"
    make_adapter(shipped / "wiggle")
    monkeypatch.setattr(assets, "DEMO_LORAS", shipped)
    monkeypatch.chdir(tmp_path)
    assert assets.demo_lora_names() == ["wiggle"]
    [(file, scale)] = resolve_lora_specs(["wiggle:0.5"])
    assert file == shipped / "wiggle" / "pytorch_lora_weights.safetensors" and scale == 0.5
    mine = make_adapter(tmp_path / "wiggle", seed=3)  # a folder of that name where the command runs wins
    assert resolve_lora_specs(["wiggle"])[0][0].resolve() == (mine / "pytorch_lora_weights.safetensors").resolve()
    with pytest.raises(FileNotFoundError, match=r"shipped with the demo model \(wiggle\)"):
        resolve_lora_specs(["wobble"])


def test_lora_scale_folds_a_strength_into_the_adapter(adapters, tmp_path, capsys):
    """`soraplan lora scale --lora IN:S -o OUT`: OUT at weight 1 samples what IN does at weight S, and
    keeps IN's adapter config (rank, alpha, targets)."""
    from soraplan.cli.main import main
    from soraplan.pipelines.lora import read_lora_file

    style, _ = adapters
    assert main(["lora", "scale", "--lora", f"{style}:0.6", "-o", str(tmp_path / "scaled")]) == 0
    (_, original), (_, scaled) = read_lora_file(style), read_lora_file(tmp_path / "scaled")
    assert scaled == original and scaled["transformer.r"] == 4
    at_scale = build_tiny_pipeline()
    at_scale.load_lora_weights(style, adapter_name="style")
    at_scale.set_adapters(["style"], [0.6])
    folded = build_tiny_pipeline()
    folded.load_lora_weights(tmp_path / "scaled", adapter_name="scaled")
    expected, got = latents(at_scale), latents(folded)
    assert (expected - latents(build_tiny_pipeline())).abs().max() > 1e-3  # the adapter does something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    capsys.readouterr()
    for args in (["--lora", str(style), "--lora", str(style)], ["--lora", str(tmp_path / "nothing")]):
        code = main(["lora", "scale", *args, "-o", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and not (tmp_path / "bad").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")  # -o never overwrites a folder with something in it
    code = main(["lora", "scale", "--lora", f"{style}:0.5", "-o", str(tmp_path / "mine")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not empty" in err[0]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
