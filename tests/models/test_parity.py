"""Reference parity: the fixture folders made by Open-Sora Plan v1.3.1 load unchanged and reproduce its outputs."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from soraplan.models import OpenSoraInpaint, OpenSoraT2V, transformer_class
from soraplan.models.checkpoints import checkpoint_shapes, read_config

from ..conftest import require_parity_dir

TOLERANCE = 1e-4  # fp32 max abs error; the measured error is below 2e-6

FIXTURES = [("transformer_inpaint", OpenSoraInpaint), ("transformer_t2v", OpenSoraT2V)]


def _cases(io: dict) -> list[str]:
    return sorted({key.split(".")[0] for key in io if key.endswith(".out")})


def _call_kwargs(io: dict, case: str) -> dict:
    names = ("hidden_states", "timestep", "encoder_hidden_states", "attention_mask", "encoder_attention_mask")
    return {name: io[f"{case}.{name}"] for name in names if f"{case}.{name}" in io}


@pytest.mark.parametrize("name,cls", FIXTURES)
def test_fixture_folder_loads_strictly(name, cls):
    folder = require_parity_dir() / name
    assert transformer_class(read_config(folder)) is cls
    model, info = cls.from_pretrained(folder, output_loading_info=True)
    assert all(not v for v in info.values()), info
    stored = checkpoint_shapes(folder)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == stored
    reference = load_file(folder / "diffusion_pytorch_model.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.parametrize("name,cls", FIXTURES)
def test_fixture_outputs(name, cls):
    folder = require_parity_dir() / name
    model = cls.from_pretrained(folder).eval()
    io = load_file(folder / "io.safetensors")
    cases = _cases(io)
    assert cases
    for case in cases:
        with torch.no_grad():
            out = model(**_call_kwargs(io, case), return_dict=False)[0]
        assert out.shape == io[f"{case}.out"].shape
        err = (out - io[f"{case}.out"]).abs().max().item()
        assert err <= TOLERANCE, f"{name} {case}: max abs error {err:.2e}"


@pytest.mark.parametrize("name,cls", FIXTURES)
def test_fixture_intermediates(name, cls):
    """Block by block, so a failure says where the computation departs from the reference."""
    folder = require_parity_dir() / name
    model = cls.from_pretrained(folder).eval()
    io = load_file(folder / "io.safetensors")
    for case in _cases(io):
        expected = {k[len(case) + 7:]: v for k, v in io.items() if k.startswith(f"{case}.debug.")}
        if not expected:
            continue
        seen = {}
        hooks = [
            model.pos_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("pos_embed", o)),
            model.caption_projection.register_forward_hook(lambda m, i, o: seen.__setitem__("caption_projection", o)),
            model.adaln_single.register_forward_hook(
                lambda m, i, o: seen.update({"adaln_single.timestep6": o[0], "adaln_single.embedded_timestep": o[1]})
            ),
        ]
        for index, block in enumerate(model.transformer_blocks):
            hooks.append(block.register_forward_hook(
                lambda m, i, o, index=index: seen.__setitem__(f"block{index}.out_SBD", o.transpose(0, 1))
            ))
        with torch.no_grad():
            model(**_call_kwargs(io, case))
        for hook in hooks:
            hook.remove()
        for key, value in expected.items():
            mine = seen[key].reshape(value.shape)
            err = (mine - value).abs().max().item()
            assert err <= TOLERANCE, f"{name} {case} {key}: max abs error {err:.2e}"
