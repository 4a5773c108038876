"""The Open-Sora Plan v1.3 diffusion transformer: text-to-video (T2V) and inpainting / image-to-video.

Data flow (B batch, S = T·(H/p)·(W/p) video tokens, L text tokens, D hidden size):

    latents (B, C, T, H, W) --patchify--> tokens (B, S, D)
    timestep (B,) --adaLN-single--> per-block modulation (B, 6, D) and final modulation (B, D)
    text (B, L, C_text) --caption projection--> (B, L, D)
    N x block:  x += gate·SelfAttn(modulate(LN(x)))      RoPE-3D, dense or Skiparse
                x += CrossAttn(x, text)                   no norm, no gate (as released)
                x += gate·FF(modulate(LN(x)))
    final adaLN-modulated LN -> linear -> unpatchify -> (B, C_out, T, H, W)

The first two and last two layers attend densely; the layers between alternate single-skip (even
index) and group-skip (odd index) Skiparse when ``sparse1d`` is on. For 32 layers this is exactly the
released schedule; other depths keep the same rule.

Parameter names and shapes equal the reference's, so ``from_pretrained`` loads released folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.embeddings import PixArtAlphaTextProjection
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormSingle
from torch import nn

from .attention import Attention, key_padding_bias, self_attention_bias
from .feedforward import feed_forward
from .rope import RoPE3D, fold_rotation_sign

logger = logging.getLogger(__name__)


@dataclass
class BlockInputs:
    """What every block takes, built once per forward by ``OpenSoraT2V.prepare_inputs``."""

    tokens: torch.Tensor  # (B, S, D) embedded latents
    text: torch.Tensor  # (B, L, D) projected captions
    modulation: torch.Tensor  # (B, 6, D) adaLN-single output
    embedded_timestep: torch.Tensor  # (B, D) for the final modulation
    rope: tuple[torch.Tensor, torch.Tensor]  # cos, sign-folded sin (S, head_dim): see rope.rotate
    self_biases: dict  # (sparse ratio, group skip?) -> additive key bias or None
    text_bias: torch.Tensor | None  # (B, 1, 1, L)
    grid: tuple[int, int, int]  # local (T, H/p, W/p)


def layer_attention_kinds(num_layers: int, sparse1d: bool, sparse_n: int) -> list[tuple[int, bool]]:
    """(sparse ratio, group skip?) of every layer's self-attention; ratio 1 means dense."""
    kinds = []
    for index in range(num_layers):
        sparse = sparse1d and 2 <= index < num_layers - 2
        kinds.append((sparse_n, index % 2 == 1) if sparse else (1, False))
    return kinds


class PatchEmbed2D(nn.Module):
    """Frame-wise p×p patchify: (B, C, T, H, W) -> (B, T·(H/p)·(W/p), D), tokens in (t, h, w) order."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, height, width = x.shape
        x = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        x = self.proj(x)  # (B·T, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2).reshape(batch, -1, x.shape[1])  # (B, S, D)


class OpenSoraBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward with adaLN-single modulation."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        cross_attention_dim: int,
        dropout: float,
        activation_fn: str,
        attention_bias: bool,
        norm_elementwise_affine: bool,
        norm_eps: float,
        sparse_ratio: int = 1,
        sparse_group: bool = False,
    ):
        super().__init__()
        self.sparse_ratio = sparse_ratio
        self.sparse_group = sparse_group
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.attn1 = Attention(dim, heads, head_dim, bias=attention_bias, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        self.attn2 = Attention(dim, heads, head_dim, context_dim=cross_attention_dim, bias=attention_bias, dropout=dropout)
        self.ff = feed_forward(dim, dropout, activation_fn)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def modulated_input(self, x: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """What self-attention sees: LN(x)·(1 + scale) + shift, (B, S, D). Step caches watch it."""
        shift, scale = (self.scale_shift_table[None, :2] + modulation[:, :2]).chunk(2, dim=1)  # (B, 1, D)
        return torch.addcmul(shift, self.norm1(x), 1 + scale)

    def forward(
        self,
        x: torch.Tensor,  # (B, S, D)
        text: torch.Tensor,  # (B, L, D)
        modulation: torch.Tensor,  # (B, 6, D)
        rope: tuple[torch.Tensor, torch.Tensor],
        self_bias: torch.Tensor | None,
        text_bias: torch.Tensor | None,
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + modulation
        ).chunk(6, dim=1)  # each (B, 1, D)
        # addcmul(a, b, c) = a + b·c in one pass over (B, S, D)
        h = torch.addcmul(shift_msa, self.norm1(x), 1 + scale_msa)
        attended = self.attn1(
            h, bias=self_bias, rope=rope, sparse_ratio=self.sparse_ratio, sparse_group=self.sparse_group
        )
        x = torch.addcmul(x, gate_msa, attended)
        x = x + self.attn2(x, context=text, bias=text_bias)
        h = torch.addcmul(shift_mlp, self.norm2(x), 1 + scale_mlp)
        return torch.addcmul(x, gate_mlp, self.ff(h))


class OpenSoraT2V(ModelMixin, ConfigMixin, PeftAdapterMixin):
    """Open-Sora Plan v1.3 text-to-video transformer (reference class ``OpenSoraT2V_v1_3``).

    Config fields and defaults are the reference's; the released 2B/122 values are in
    :data:`soraplan.models.configs.TRANSFORMER_SIZES`. LoRA adapters (peft) attach through diffusers'
    ``PeftAdapterMixin`` (``add_adapter``, ``load_lora_adapter``, ``set_adapters``, ...).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["OpenSoraBlock"]
    _repeated_blocks = ["OpenSoraBlock"]  # regional torch.compile: ModelMixin.compile_repeated_blocks

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 88,
        in_channels: int | None = None,
        out_channels: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        cross_attention_dim: int | None = None,
        attention_bias: bool = True,
        sample_size_h: int | list | None = None,
        sample_size_w: int | list | None = None,
        sample_size_t: int | None = None,
        patch_size: int | None = None,
        patch_size_t: int | None = None,
        activation_fn: str = "geglu",
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        norm_elementwise_affine: bool = False,
        norm_eps: float = 1e-6,
        caption_channels: int | None = None,
        interpolation_scale_h: float = 1.0,
        interpolation_scale_w: float = 1.0,
        interpolation_scale_t: float = 1.0,
        sparse1d: bool = False,
        sparse_n: int = 2,
        guidance_embeds: bool = False,
    ):
        super().__init__()
        hidden_size = num_attention_heads * attention_head_dim
        _check_config(
            in_channels, patch_size, patch_size_t, caption_channels, cross_attention_dim, hidden_size,
            sparse1d, sparse_n, num_layers, only_cross_attention, double_self_attention,
        )
        self.hidden_size = hidden_size
        self.out_channels = out_channels or in_channels
        self.gradient_checkpointing = False
        self.sequence_parallel = None  # see soraplan.parallel.enable_sequence_parallel
        self.rope = RoPE3D(
            attention_head_dim, (interpolation_scale_t, interpolation_scale_h, interpolation_scale_w)
        )

        # registration order gives the reference's state-dict order
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.caption_projection = PixArtAlphaTextProjection(caption_channels, hidden_size)
        self.pos_embed = PatchEmbed2D(patch_size, in_channels, hidden_size)
        self.transformer_blocks = nn.ModuleList(
            OpenSoraBlock(
                hidden_size, num_attention_heads, attention_head_dim, hidden_size, dropout, activation_fn,
                attention_bias, norm_elementwise_affine, norm_eps, sparse_ratio, sparse_group,
            )
            for sparse_ratio, sparse_group in layer_attention_kinds(num_layers, sparse1d, sparse_n)
        )
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        self.adaln_single = AdaLayerNormSingle(hidden_size, use_additional_conditions=False)
        # not in the release: a guidance-distilled student's guidance-scale input (soraplan distill
        # --guidance_range), zero at initialisation so that the student starts as its teacher
        self.guidance_embedder = GuidanceEmbedding(hidden_size) if guidance_embeds else None

    @property
    def layer_kinds(self) -> list[str]:
        """'dense', 'single' or 'group' per layer, for logs and reports."""
        return [
            "dense" if b.sparse_ratio == 1 else ("group" if b.sparse_group else "single")
            for b in self.transformer_blocks
        ]

    @property
    def expected_in_channels(self) -> int:
        return self.config.in_channels

    def embed_latents(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, S, D)."""
        return self.pos_embed(hidden_states)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        guidance: torch.Tensor | float | None = None,
        **unused,
    ):
        """Predict the diffusion target for latents (B, C_in, T, H, W).

        ``encoder_hidden_states`` (B, 1, L, C) or (B, L, C); ``attention_mask`` (B, T, H, W) video mask
        and ``encoder_attention_mask`` (B, 1, L) or (B, L) text mask, 1 = keep; None = all valid.
        ``guidance`` (B,) or a scalar: the guidance scale, for a model with ``guidance_embeds`` only.
        Extra keyword arguments of the reference call (e.g. ``pooled_projections``) are ignored.
        """
        state = self.prepare_inputs(hidden_states, timestep, encoder_hidden_states, attention_mask,
                                    encoder_attention_mask, guidance)
        return self.finish(self.run_blocks(state), state, return_dict)

    # The forward pass in three stages, so that accelerations (soraplan.acceleration) can wrap the
    # expensive middle one without branches in the model: prepare_inputs -> run_blocks -> finish.

    def prepare_inputs(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
    ) -> BlockInputs:
        """Embeddings, modulation, masks and RoPE tables: everything the blocks take."""
        batch, channels, frames, height, width = hidden_states.shape
        patch = self.config.patch_size
        if channels != self.expected_in_channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.expected_in_channels} latent channels, got {channels}"
            )
        if height % patch or width % patch:
            raise ValueError(
                f"latent height and width must be multiples of patch_size={patch}, got {height}x{width} "
                f"(in pixels: multiples of {patch * 8})"
            )
        grid = (frames, height // patch, width // patch)
        parallel = self.sequence_parallel  # each rank holds 1/N of the frames; attention sees them all
        full_grid = (frames * parallel.world, grid[1], grid[2]) if parallel is not None else grid
        seq_len = full_grid[0] * full_grid[1] * full_grid[2]

        tokens = self.embed_latents(hidden_states)  # (B, S, D)
        dtype, device = tokens.dtype, tokens.device
        modulation, embedded_timestep = self.modulation(_batch_timestep(timestep, batch, device), guidance,
                                                        batch, dtype)  # (B, 6D), (B, D)
        modulation = modulation.view(batch, 6, self.hidden_size)
        text, text_keep = _drop_padding_tail(_text_states(encoder_hidden_states, batch),
                                             _text_keep(encoder_attention_mask, batch))
        text = self.caption_projection(text)  # (B, L', D)
        text_bias = key_padding_bias(_nothing_masked_is_none(text_keep), dtype)  # (B, 1, 1, L')

        token_keep = _token_keep(attention_mask, grid, patch, batch)  # (B, S_local) bool or None
        if parallel is not None and token_keep is not None:
            token_keep = parallel.gather(token_keep.to(torch.uint8), dim=1).bool()  # (B, S)
        token_keep = _nothing_masked_is_none(token_keep)
        self_biases = {
            kind: self_attention_bias(token_keep, batch, seq_len, *kind, dtype, device)
            for kind in {(b.sparse_ratio, b.sparse_group) for b in self.transformer_blocks}
        }
        cos, sin = self.rope.cos_sin(full_grid, device, dtype)
        rope = (cos, fold_rotation_sign(sin))  # what every self-attention's rope.rotate takes
        return BlockInputs(tokens, text, modulation, embedded_timestep, rope, self_biases, text_bias, grid)

    def modulation(self, timestep: torch.Tensor, guidance, batch: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """adaLN-single: the timestep embedding (B, D) and the blocks' modulation (B, 6D) from it; with
        a guidance embedding, the guidance scale's embedding is added to the timestep's first."""
        if self.guidance_embedder is None:
            if guidance is not None:
                raise ValueError("guidance was given, but this transformer has no guidance embedding "
                                 "(guidance_embeds is off): use classifier-free guidance instead")
            return self.adaln_single(timestep, batch_size=batch, hidden_dtype=dtype)
        if guidance is None:
            raise ValueError("this transformer embeds the guidance scale (guidance_embeds): pass guidance=")
        embedded = self.adaln_single.emb(timestep, resolution=None, aspect_ratio=None, batch_size=batch,
                                         hidden_dtype=dtype)  # (B, D)
        embedded = embedded + self.guidance_embedder(_batch_timestep(guidance, batch, timestep.device), dtype)
        return self.adaln_single.linear(self.adaln_single.silu(embedded)), embedded

    def run_blocks(self, state: BlockInputs) -> torch.Tensor:
        """The transformer blocks: (B, S, D) tokens in, (B, S, D) tokens out."""
        tokens = state.tokens
        for block in self.transformer_blocks:
            args = (tokens, state.text, state.modulation, state.rope,
                    state.self_biases[(block.sparse_ratio, block.sparse_group)], state.text_bias)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(block, *args)
            else:
                tokens = block(*args)
        return tokens

    def finish(self, tokens: torch.Tensor, state: BlockInputs, return_dict: bool = True):
        """Final modulated norm, projection and unpatchify: (B, S, D) -> (B, C_out, T, H, W)."""
        shift, scale = (self.scale_shift_table[None] + state.embedded_timestep[:, None]).chunk(2, dim=1)  # (B, 1, D)
        tokens = self.norm_out(tokens) * (1 + scale) + shift
        tokens = self.proj_out(tokens)  # (B, S, p·p·C_out)
        output = self._unpatchify(tokens, state.grid)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, S, p·p·C) -> (B, C, T, H, W); a token's channels are ordered (row, col, channel)."""
        frames, rows, cols = grid
        patch, channels = self.config.patch_size, self.out_channels
        x = tokens.reshape(tokens.shape[0], frames, rows, cols, patch, patch, channels)
        x = x.permute(0, 6, 1, 2, 4, 3, 5)  # (B, C, T, rows, p, cols, p)
        return x.reshape(tokens.shape[0], channels, frames, rows * patch, cols * patch)


class OpenSoraInpaint(OpenSoraT2V):
    """Open-Sora Plan v1.3 inpainting / image-to-video transformer (reference ``OpenSoraInpaint_v1_3``).

    Input channels: noisy latent (C) | VAE latent of the masked conditioning video (C) | compressed frame
    mask (``vae_scale_factor_t``). The two conditioning inputs get their own patch embedding followed by
    a bias-free linear that is zero at initialisation, so a fresh model behaves as the T2V model.

    ``reference_frame``: the model was trained (``soraplan train --continuation_anchor``) to take an
    appearance reference as one extra given latent frame before the clip (the image encoded alone,
    mask 0; the pipeline's ``reference``). Nothing in the forward pass changes: the flag tells a
    pipeline which layout an anchored long video's segments get.
    """

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 16,
        attention_head_dim: int = 88,
        in_channels: int | None = None,
        out_channels: int | None = None,
        num_layers: int = 1,
        dropout: float = 0.0,
        cross_attention_dim: int | None = None,
        attention_bias: bool = True,
        sample_size_h: int | list | None = None,
        sample_size_w: int | list | None = None,
        sample_size_t: int | None = None,
        patch_size: int | None = None,
        patch_size_t: int | None = None,
        activation_fn: str = "geglu",
        only_cross_attention: bool = False,
        double_self_attention: bool = False,
        upcast_attention: bool = False,
        norm_elementwise_affine: bool = False,
        norm_eps: float = 1e-6,
        caption_channels: int | None = None,
        interpolation_scale_h: float = 1.0,
        interpolation_scale_w: float = 1.0,
        interpolation_scale_t: float = 1.0,
        sparse1d: bool = False,
        sparse_n: int = 2,
        vae_scale_factor_t: int = 4,
        guidance_embeds: bool = False,
        reference_frame: bool = False,
    ):
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=num_layers,
            dropout=dropout,
            cross_attention_dim=cross_attention_dim,
            attention_bias=attention_bias,
            sample_size_h=sample_size_h,
            sample_size_w=sample_size_w,
            sample_size_t=sample_size_t,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            activation_fn=activation_fn,
            only_cross_attention=only_cross_attention,
            double_self_attention=double_self_attention,
            upcast_attention=upcast_attention,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            caption_channels=caption_channels,
            interpolation_scale_h=interpolation_scale_h,
            interpolation_scale_w=interpolation_scale_w,
            interpolation_scale_t=interpolation_scale_t,
            sparse1d=sparse1d,
            sparse_n=sparse_n,
            guidance_embeds=guidance_embeds,
        )
        self.vae_scale_factor_t = vae_scale_factor_t
        self.pos_embed_masked_hidden_states = nn.ModuleList(
            [PatchEmbed2D(patch_size, in_channels, self.hidden_size), _zero_linear(self.hidden_size)]
        )
        self.pos_embed_mask = nn.ModuleList(
            [PatchEmbed2D(patch_size, vae_scale_factor_t, self.hidden_size), _zero_linear(self.hidden_size)]
        )

    @property
    def expected_in_channels(self) -> int:
        return 2 * self.config.in_channels + self.vae_scale_factor_t

    def embed_latents(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, 2C + m, T, H, W) -> (B, S, D): sum of the three input embeddings."""
        latent_channels = self.config.in_channels
        noisy, masked_video, mask = hidden_states.split(
            [latent_channels, latent_channels, self.vae_scale_factor_t], dim=1
        )
        masked_embed, masked_linear = self.pos_embed_masked_hidden_states
        mask_embed, mask_linear = self.pos_embed_mask
        return self.pos_embed(noisy) + masked_linear(masked_embed(masked_video)) + mask_linear(mask_embed(mask))


class GuidanceEmbedding(nn.Module):
    """Guidance scale w (B,) -> (B, D), added to the timestep embedding: w·1000 through the same
    sinusoidal projection and MLP shape as the timestep (so 1 and 8 are as far apart as timesteps 1000
    and 8000), the MLP's last layer zero so a new embedding changes nothing until it is trained."""

    def __init__(self, hidden_size: int, frequencies: int = 256):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.proj = Timesteps(frequencies, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.embedder = TimestepEmbedding(frequencies, hidden_size)
        nn.init.zeros_(self.embedder.linear_2.weight)
        nn.init.zeros_(self.embedder.linear_2.bias)

    def forward(self, guidance: torch.Tensor, dtype) -> torch.Tensor:
        return self.embedder(self.proj(guidance.float() * 1000).to(dtype))


def _zero_linear(dim: int) -> nn.Linear:
    linear = nn.Linear(dim, dim, bias=False)
    nn.init.zeros_(linear.weight)
    return linear


def _check_config(
    in_channels, patch_size, patch_size_t, caption_channels, cross_attention_dim, hidden_size,
    sparse1d, sparse_n, num_layers, only_cross_attention, double_self_attention,
):
    """Reject configs the architecture cannot run, with the field to fix."""
    for name, value in (("in_channels", in_channels), ("patch_size", patch_size), ("caption_channels", caption_channels)):
        if value is None:
            raise ValueError(f"transformer config needs `{name}` (the v1.3 release uses in_channels=8, patch_size=2, caption_channels=4096)")
    if patch_size_t not in (None, 1):
        raise ValueError(f"patch_size_t={patch_size_t} is not supported: Open-Sora Plan v1.3 patchifies frame by frame (patch_size_t=1)")
    if cross_attention_dim not in (None, hidden_size):
        raise ValueError(
            f"cross_attention_dim={cross_attention_dim} must equal num_attention_heads*attention_head_dim={hidden_size}: "
            "captions are projected to the hidden size before cross-attention"
        )
    if sparse1d and sparse_n < 2:
        raise ValueError(f"sparse1d=True needs sparse_n >= 2 (got {sparse_n}); set sparse1d=False for dense attention")
    if sparse1d and num_layers < 5:
        logger.warning(
            "sparse1d=True with num_layers=%d: the first two and last two layers are dense, so no layer uses Skiparse",
            num_layers,
        )
    if only_cross_attention or double_self_attention:
        raise ValueError("only_cross_attention / double_self_attention are not part of the v1.3 architecture; set both to false")


def _batch_timestep(timestep, batch: int, device: torch.device) -> torch.Tensor:
    timestep = torch.as_tensor(timestep, device=device)
    if timestep.ndim == 0 or timestep.numel() == 1:
        return timestep.reshape(1).expand(batch)
    if timestep.shape != (batch,):
        raise ValueError(f"timestep must be a scalar or have shape ({batch},), got {tuple(timestep.shape)}")
    return timestep


def _text_states(encoder_hidden_states: torch.Tensor, batch: int) -> torch.Tensor:
    """Accept (B, 1, L, C) (reference convention) or (B, L, C); return (B, L, C)."""
    if encoder_hidden_states.ndim == 4:
        if encoder_hidden_states.shape[1] != 1:
            raise ValueError(
                f"encoder_hidden_states of shape {tuple(encoder_hidden_states.shape)}: the 4-D form must be (B, 1, L, C)"
            )
        encoder_hidden_states = encoder_hidden_states[:, 0]
    if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch:
        raise ValueError(
            f"encoder_hidden_states must be (B, L, C) or (B, 1, L, C) with B={batch}, got {tuple(encoder_hidden_states.shape)}"
        )
    return encoder_hidden_states


def _text_keep(encoder_attention_mask: torch.Tensor | None, batch: int) -> torch.Tensor | None:
    """(B, 1, L) or (B, L) text mask -> (B, L)."""
    if encoder_attention_mask is None:
        return None
    if encoder_attention_mask.ndim == 3:
        encoder_attention_mask = encoder_attention_mask[:, 0]
    if encoder_attention_mask.ndim != 2 or encoder_attention_mask.shape[0] != batch:
        raise ValueError(
            f"encoder_attention_mask must be (B, L) or (B, 1, L) with B={batch}, got {tuple(encoder_attention_mask.shape)}"
        )
    return encoder_attention_mask


def _drop_padding_tail(text: torch.Tensor, keep: torch.Tensor | None):
    """Cut the text columns after the last token any prompt keeps: every query gives those keys weight
    exactly 0 (exp of -10000 underflows), so the output is unchanged while cross-attention and the
    caption projection skip them (prompts are padded to 512 tokens but are typically 100-200 long).
    Left alone when a prompt keeps no token at all: its attention is uniform over every padded key."""
    if keep is None:
        return text, keep
    keep = keep.bool()
    if not bool(keep.any(dim=1).all()):
        return text, keep
    length = int(keep.any(dim=0).nonzero().max()) + 1
    return text[:, :length], keep[:, :length]


def _nothing_masked_is_none(keep: torch.Tensor | None) -> torch.Tensor | None:
    """An all-ones keep-mask (what the reference's pipeline passes) as None: adding a zero bias changes
    nothing, and without a bias SDPA may pick its fastest kernels."""
    if keep is not None and bool(keep.all()):
        return None
    return keep


def _token_keep(attention_mask: torch.Tensor | None, grid, patch: int, batch: int) -> torch.Tensor | None:
    """(B, T, H, W) latent-resolution video mask -> (B, S) bool; a token is kept if any of its pixels is."""
    if attention_mask is None:
        return None
    if attention_mask.ndim == 5 and attention_mask.shape[1] == 1:
        attention_mask = attention_mask[:, 0]
    expected = (batch, grid[0], grid[1] * patch, grid[2] * patch)
    if tuple(attention_mask.shape) != expected:
        raise ValueError(f"attention_mask must have shape (B, T, H, W) = {expected}, got {tuple(attention_mask.shape)}")
    pooled = F.max_pool3d(attention_mask[:, None].float(), kernel_size=(1, patch, patch))  # (B, 1, T, H/p, W/p)
    return pooled.flatten(1).bool()
