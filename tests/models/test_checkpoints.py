"""T2V -> I2V initialisation (the `--pretrained` path of training) and checkpoint-folder checks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from soraplan.models import (
    OpenSoraInpaint,
    build_inpaint,
    build_t2v,
    check_checkpoint_folder,
    init_inpaint_from_t2v,
    inpaint_from_t2v_pretrained,
    transformer_class,
)

from ..conftest import randomize_


def inpaint_inputs(batch=2, frames=3, height=6, width=10, text_len=7):
    hidden = torch.randn(batch, 20, frames, height, width)
    hidden[:, 16:] = (torch.rand(batch, 4, frames, 1, 1) > 0.5).float().expand(-1, -1, -1, height, width)
    return dict(
        hidden_states=hidden,
        timestep=torch.tensor([700.0, 20.0][:batch]),
        encoder_hidden_states=torch.randn(batch, 1, text_len, 32),
        encoder_attention_mask=torch.ones(batch, 1, text_len, dtype=torch.long),
    )


def test_inpaint_initialised_from_t2v_computes_the_t2v_model(tmp_path):
    t2v = randomize_(build_t2v("tiny"), seed=1).eval()
    t2v.save_pretrained(tmp_path)
    inpaint, report = inpaint_from_t2v_pretrained(tmp_path)
    inpaint = randomize_(inpaint, seed=2)  # scramble, then initialise again in place
    report = init_inpaint_from_t2v(inpaint, t2v.state_dict())
    inpaint.eval()
    assert sorted(report.zeroed) == ["pos_embed_mask.1.weight", "pos_embed_masked_hidden_states.1.weight"]
    assert sorted(report.from_pos_embed) == [
        "pos_embed_masked_hidden_states.0.proj.bias", "pos_embed_masked_hidden_states.0.proj.weight"
    ]
    assert sorted(report.kept_init) == ["pos_embed_mask.0.proj.bias", "pos_embed_mask.0.proj.weight"]
    assert len(report.copied) == len(t2v.state_dict()) and not report.shape_mismatch and not report.unused
    for _ in range(3):  # any masked input: latent, masked-video latent and mask channels all random
        inputs = inpaint_inputs()
        with torch.no_grad():
            expected = t2v(**{**inputs, "hidden_states": inputs["hidden_states"][:, :8]}).sample
            torch.testing.assert_close(inpaint(**inputs).sample, expected, atol=1e-6, rtol=0)


def test_inpaint_checkpoint_keeps_its_own_conditioning_weights():
    source = randomize_(build_inpaint("tiny"), seed=3)
    target = build_inpaint("tiny")
    report = init_inpaint_from_t2v(target, source.state_dict())
    assert not report.zeroed and not report.from_pos_embed and not report.kept_init
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_shape_mismatch_is_reported_not_copied():
    source = randomize_(build_t2v("tiny", caption_channels=16), seed=4).state_dict()
    target = build_inpaint("tiny")
    before = target.caption_projection.linear_1.weight.clone()
    report = init_inpaint_from_t2v(target, source)
    assert report.shape_mismatch == ["caption_projection.linear_1.weight"]
    assert torch.equal(target.caption_projection.linear_1.weight, before)


def test_check_checkpoint_folder_finds_missing_and_misshaped_keys(tmp_path):
    model = build_inpaint("tiny")
    model.save_pretrained(tmp_path)
    good = check_checkpoint_folder(tmp_path)
    assert good.ok and good.model_class is OpenSoraInpaint and good.num_parameters == model.num_parameters()
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["proj_out.bias"]
    state["proj_out.weight"] = torch.zeros(3, 3)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, weights)
    bad = check_checkpoint_folder(tmp_path)
    assert not bad.ok
    assert bad.missing == ["proj_out.bias"] and bad.unexpected == ["extra.weight"]
    assert bad.wrong_shape == [("proj_out.weight", (3, 3), (32, 24))]


def test_transformer_class_from_config():
    assert transformer_class({"_class_name": "OpenSoraInpaint_v1_3"}) is OpenSoraInpaint
    assert transformer_class({"vae_scale_factor_t": 4}) is OpenSoraInpaint
    with pytest.raises(ValueError, match="not a v1.3 transformer"):
        transformer_class({"_class_name": "UNet3DConditionModel"})


def test_released_class_name_loads_without_renaming(tmp_path):
    model = randomize_(build_inpaint("tiny"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["_class_name"] = "OpenSoraInpaint_v1_3"
    config["_diffusers_version"] = "0.30.2"
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded, info = OpenSoraInpaint.from_pretrained(tmp_path, output_loading_info=True)
    assert all(not v for v in info.values())
