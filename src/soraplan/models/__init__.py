"""Neural network modules: the v1.3 diffusion transformer (T2V and inpaint/I2V) and the WF-VAE."""

from .configs import (
    TRANSFORMER_SIZES,
    build_inpaint,
    build_t2v,
    opensora_inpaint_2b_122,
    opensora_t2v_2b_122,
)
from .checkpoints import (
    InpaintInitReport,
    check_checkpoint_folder,
    checkpoint_shapes,
    init_inpaint_from_t2v,
    inpaint_from_t2v_pretrained,
    read_config,
    transformer_class,
)
from .transformer import OpenSoraInpaint, OpenSoraT2V, layer_attention_kinds
from .vae import WFVAE

__all__ = [
    "InpaintInitReport",
    "check_checkpoint_folder",
    "checkpoint_shapes",
    "init_inpaint_from_t2v",
    "inpaint_from_t2v_pretrained",
    "read_config",
    "transformer_class",
    "OpenSoraInpaint",
    "OpenSoraT2V",
    "TRANSFORMER_SIZES",
    "WFVAE",
    "build_inpaint",
    "build_t2v",
    "layer_attention_kinds",
    "opensora_inpaint_2b_122",
    "opensora_t2v_2b_122",
]
