"""Behaviour of the v1.3 transformer beyond the fixtures: shapes, masks, configs, dtypes, training hooks."""

from __future__ import annotations

import pytest
import torch

import soraplan.models.attention as attention_module
from soraplan.models import (
    OpenSoraInpaint,
    OpenSoraT2V,
    build_inpaint,
    build_t2v,
    layer_attention_kinds,
    opensora_inpaint_2b_122,
    opensora_t2v_2b_122,
)
from soraplan.models.rope import RoPE3D
from soraplan.models.skiparse import skiparse_subsequence_ids

from ..conftest import randomize_


def t2v_inputs(batch=2, frames=3, height=6, width=10, text_len=7, channels=8, caption=32):
    return dict(
        hidden_states=torch.randn(batch, channels, frames, height, width),
        timestep=torch.tensor([500.0, 3.0][:batch] + [10.0] * max(0, batch - 2)),
        encoder_hidden_states=torch.randn(batch, 1, text_len, caption),
        encoder_attention_mask=torch.ones(batch, 1, text_len, dtype=torch.long),
    )


def test_release_parameter_counts_and_keys():
    with torch.device("meta"):
        inpaint = opensora_inpaint_2b_122()
        t2v = opensora_t2v_2b_122()
    assert sum(p.numel() for p in inpaint.parameters()) == 2_782_713_632
    assert sum(p.numel() for p in t2v.parameters()) == 2_771_981_600
    inpaint_keys, t2v_keys = inpaint.state_dict(), t2v.state_dict()
    assert (len(inpaint_keys), len(t2v_keys)) == (693, 687)
    assert set(inpaint_keys) - set(t2v_keys) == {
        "pos_embed_masked_hidden_states.0.proj.weight", "pos_embed_masked_hidden_states.0.proj.bias",
        "pos_embed_masked_hidden_states.1.weight", "pos_embed_mask.0.proj.weight", "pos_embed_mask.0.proj.bias",
        "pos_embed_mask.1.weight",
    }
    shapes = {k: tuple(v.shape) for k, v in inpaint_keys.items()}
    assert shapes["adaln_single.linear.weight"] == (13824, 2304)
    assert shapes["caption_projection.linear_1.weight"] == (2304, 4096)
    assert shapes["pos_embed_mask.0.proj.weight"] == (2304, 4, 2, 2)
    assert shapes["transformer_blocks.31.ff.net.0.proj.weight"] == (9216, 2304)
    assert shapes["proj_out.weight"] == (32, 2304)
    assert list(inpaint_keys)[:2] == ["scale_shift_table", "caption_projection.linear_1.weight"]
    assert not list(inpaint.buffers())


def test_release_layer_schedule():
    kinds = layer_attention_kinds(32, True, 4)
    assert [i for i, (ratio, _) in enumerate(kinds) if ratio == 1] == [0, 1, 30, 31]
    assert all(kinds[i] == (4, i % 2 == 1) for i in range(2, 30))
    assert layer_attention_kinds(8, True, 3)[2:6] == [(3, False), (3, True), (3, False), (3, True)]
    assert all(ratio == 1 for ratio, _ in layer_attention_kinds(8, False, 4))


@pytest.mark.parametrize("num_layers,sparse_n,sparse1d", [(4, 4, True), (6, 2, True), (7, 3, True), (6, 4, False)])
@pytest.mark.parametrize("frames,height,width", [(3, 6, 10), (2, 8, 8), (1, 2, 2)])
def test_any_depth_ratio_and_token_count_runs(num_layers, sparse_n, sparse1d, frames, height, width):
    model = randomize_(build_t2v("tiny", num_layers=num_layers, sparse_n=sparse_n, sparse1d=sparse1d)).eval()
    inputs = t2v_inputs(frames=frames, height=height, width=width)
    with torch.no_grad():
        out = model(**inputs).sample
    assert out.shape == inputs["hidden_states"].shape
    assert out.isfinite().all()


def _dense_block_masked(q, k, v, bias, ratio, grouped):
    """Skiparse replaced by dense attention under the block mask: what a Skiparse layer must compute."""
    seq = q.shape[1]
    ids = skiparse_subsequence_ids(seq, ratio, grouped)
    block = torch.where(ids[:, None] == ids[None, :], 0.0, float("-inf"))[None, None]
    return attention_module.dense_attention(q, k, v, block + _ungrouped_key_bias(bias, ratio, grouped, seq))


def _ungrouped_key_bias(bias, ratio, grouped, seq):
    from soraplan.models.skiparse import skiparse_ungroup

    if bias is None:
        return 0.0
    return skiparse_ungroup(bias[:, 0, 0, :], ratio, grouped)[:, :seq][:, None, None, :]


@pytest.mark.parametrize("sparse_n", [2, 4])
def test_model_skiparse_equals_block_masked_dense(monkeypatch, sparse_n):
    model = randomize_(build_inpaint("tiny", sparse_n=sparse_n)).eval()
    inputs = t2v_inputs(channels=20, frames=3, height=6, width=10)
    inputs["attention_mask"] = torch.ones(2, 3, 6, 10)
    inputs["attention_mask"][1, 2, :, 4:] = 0
    inputs["encoder_attention_mask"][1, :, 4:] = 0
    with torch.no_grad():
        ours = model(**inputs).sample
        monkeypatch.setattr(attention_module, "skiparse_attention", _dense_block_masked)
        expected = model(**inputs).sample
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_masked_tokens_never_change_valid_outputs():
    model = randomize_(build_inpaint("tiny")).eval()
    inputs = t2v_inputs(channels=20, frames=3, height=6, width=10, text_len=9)
    keep = torch.ones(2, 3, 6, 10)
    keep[:, 1:, 2:, 4:] = 0  # whole 2x2 patches dropped in frames 1 and 2
    inputs["attention_mask"] = keep
    inputs["encoder_attention_mask"][0, :, 5:] = 0
    inputs["encoder_attention_mask"][1, :, 2:] = 0
    with torch.no_grad():
        base = model(**inputs).sample
        changed = dict(inputs)
        changed["hidden_states"] = torch.where(keep[:, None].bool(), inputs["hidden_states"], 100.0)
        text = inputs["encoder_hidden_states"].clone()
        text[0, :, 5:] = 50.0
        text[1, :, 2:] = -50.0
        changed["encoder_hidden_states"] = text
        other = model(**changed).sample
    valid = keep[:, None].bool().expand_as(base)
    torch.testing.assert_close(base[valid], other[valid], atol=1e-5, rtol=0)
    assert not torch.allclose(base[~valid], other[~valid])


def test_sample_in_batch_equals_sample_alone():
    model = randomize_(build_t2v("tiny")).eval()
    inputs = t2v_inputs(batch=2, text_len=8)
    inputs["encoder_attention_mask"][0, :, 3:] = 0
    with torch.no_grad():
        both = model(**inputs).sample
        for i in range(2):
            single = {k: v[i:i + 1] for k, v in inputs.items()}
            torch.testing.assert_close(model(**single).sample, both[i:i + 1], atol=1e-5, rtol=1e-5)


def test_optional_masks_and_text_layouts_agree():
    model = randomize_(build_t2v("tiny")).eval()
    inputs = t2v_inputs()
    with torch.no_grad():
        full = model(**inputs, attention_mask=torch.ones(2, 3, 6, 10)).sample
        no_masks = model(inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"]).sample
        flat_text = model(
            inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"][:, 0],
            encoder_attention_mask=inputs["encoder_attention_mask"][:, 0], pooled_projections=None,
        ).sample
        scalar_t = model(inputs["hidden_states"][:1], 500.0, inputs["encoder_hidden_states"][:1]).sample
    torch.testing.assert_close(full, no_masks, atol=1e-6, rtol=0)
    torch.testing.assert_close(full, flat_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(full[:1], scalar_t, atol=1e-6, rtol=0)


def test_bad_inputs_raise_clear_errors():
    model = build_inpaint("tiny").eval()
    good = t2v_inputs(channels=20)
    with pytest.raises(ValueError, match="expects 20 latent channels, got 8"):
        model(**t2v_inputs(channels=8))
    with pytest.raises(ValueError, match="multiples of patch_size=2"):
        model(**t2v_inputs(channels=20, height=5))
    with pytest.raises(ValueError, match=r"\(B, 1, L, C\)"):
        model(**{**good, "encoder_hidden_states": torch.randn(2, 2, 7, 32)})
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(**good, attention_mask=torch.ones(2, 3, 6, 8))
    with pytest.raises(ValueError, match="timestep"):
        model(**{**good, "timestep": torch.ones(3)})


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(attention_head_dim=8, cross_attention_dim=16), "divisible by 6"),
        (dict(sparse_n=1), "sparse_n >= 2"),
        (dict(patch_size_t=2), "patch_size_t"),
        (dict(cross_attention_dim=32), "cross_attention_dim"),
        (dict(in_channels=None), "in_channels"),
    ],
)
def test_bad_configs_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_t2v("tiny", **overrides)


def test_rope_interpolation_scale_is_per_axis():
    rope = RoPE3D(12, interpolation_scale=(2.0, 1.0, 1.0))
    plain = RoPE3D(12)
    cos_scaled, _ = rope.cos_sin((3, 2, 2), torch.device("cpu"), torch.float32)
    cos_plain, _ = plain.cos_sin((3, 2, 2), torch.device("cpu"), torch.float32)
    # t chunk differs (positions halved), y and x chunks do not
    assert not torch.allclose(cos_scaled[:, :4], cos_plain[:, :4])
    torch.testing.assert_close(cos_scaled[:, 4:], cos_plain[:, 4:])
    grid_t = torch.arange(3).repeat_interleave(4).float()
    torch.testing.assert_close(cos_scaled[:, 0], torch.cos(grid_t / 2))


def test_bf16_on_cpu_tracks_fp32():
    model = randomize_(build_inpaint("tiny"), std=0.05).eval()
    inputs = t2v_inputs(channels=20)
    with torch.no_grad():
        reference = model(**inputs).sample
        model_bf16 = model.to(torch.bfloat16)
        low = model_bf16(**{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}).sample
    assert low.dtype == torch.bfloat16
    rel = (low.float() - reference).norm() / reference.norm()
    assert rel < 0.05


def test_gradient_checkpointing_matches_plain_backward():
    model = randomize_(build_inpaint("tiny"), std=0.05).train()
    inputs = t2v_inputs(channels=20)

    def grads():
        model.zero_grad()
        model(**inputs).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    checkpointed = grads()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_block_compiles_without_graph_breaks():
    model = randomize_(build_inpaint("tiny")).eval()
    captured = {}
    sparse_block = model.transformer_blocks[3]
    assert (sparse_block.sparse_ratio, sparse_block.sparse_group) == (4, True)
    hook = sparse_block.register_forward_pre_hook(lambda m, args: captured.update(args=args))
    inputs = t2v_inputs(channels=20)
    inputs["attention_mask"] = torch.ones(2, 3, 6, 10)
    with torch.no_grad():
        model(**inputs)
    hook.remove()
    torch._dynamo.reset()
    compiled = torch.compile(sparse_block, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*captured["args"]), sparse_block(*captured["args"]))


def test_save_and_load_sharded(tmp_path):
    model = randomize_(build_inpaint("tiny")).eval()
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded, info = OpenSoraInpaint.from_pretrained(tmp_path, output_loading_info=True)
    assert all(not v for v in info.values())
    inputs = t2v_inputs(channels=20)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).sample, model(**inputs).sample, atol=0, rtol=0)


def test_t2v_class_is_not_inpaint():
    assert not issubclass(OpenSoraT2V, OpenSoraInpaint)


def test_padded_text_tail_is_skipped_without_changing_the_output():
    """Prompts padded to many tokens: the columns nobody attends to are cut before cross-attention."""
    model = randomize_(build_inpaint("tiny")).eval()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, model.expected_in_channels, 2, 8, 8, generator=generator)
    text = torch.randn(2, 1, 40, model.config.caption_channels, generator=generator)
    keep = torch.zeros(2, 1, 40, dtype=torch.long)
    keep[0, :, :10], keep[1, :, :5] = 1, 1
    with torch.no_grad():
        padded = model(x, 700, text, encoder_attention_mask=keep).sample
        short = model(x, 700, text[:, :, :10], encoder_attention_mask=keep[:, :, :10]).sample
        assert torch.allclose(padded, short, atol=1e-6)
        keep[1] = 0  # a prompt with no token: its queries attend uniformly to all 40 padded keys
        degenerate = model(x, 700, text, encoder_attention_mask=keep).sample
        cut = model(x, 700, text[:, :, :10], encoder_attention_mask=keep[:, :, :10]).sample
    assert torch.allclose(degenerate[0], cut[0], atol=1e-6) and not torch.allclose(degenerate[1], cut[1], atol=1e-4)


def test_guidance_embedding_starts_as_the_base_model_and_round_trips(tmp_path):
    """``guidance_embeds`` (not in the release; a guidance-range student's input): zero at first, so the
    model equals the one without it for any scale; once trained, the scale changes the output; the
    folder reloads with it; a missing or unexpected ``guidance`` is a clear error."""
    base = randomize_(build_inpaint("tiny")).eval()
    model = OpenSoraInpaint.from_config(base.config, guidance_embeds=True).eval()
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("guidance_embedder.") for key in missing)
    inputs = t2v_inputs(channels=20)
    with torch.no_grad():
        plain = base(**inputs).sample
        torch.testing.assert_close(model(**inputs, guidance=torch.tensor([2.0, 7.5])).sample, plain, atol=0, rtol=0)
        torch.nn.init.normal_(model.guidance_embedder.embedder.linear_2.weight, std=0.05)
        low, high = model(**inputs, guidance=2.0).sample, model(**inputs, guidance=7.5).sample
        assert (low - high).abs().max() > 1e-3
        model.save_pretrained(tmp_path)
        loaded = OpenSoraInpaint.from_pretrained(tmp_path).eval()
        assert loaded.config.guidance_embeds
        torch.testing.assert_close(loaded(**inputs, guidance=7.5).sample, high, atol=0, rtol=0)
    with pytest.raises(ValueError, match="embeds the guidance scale"):
        model(**inputs)
    with pytest.raises(ValueError, match="has no guidance embedding"):
        base(**inputs, guidance=3.0)
