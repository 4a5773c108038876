"""The demo model's text encoder: a small T5 encoder over bytes (``ByT5Tokenizer`` needs no vocabulary
files), initialised from a seed and kept frozen, as the release keeps mT5-XXL frozen.

Why untrained is enough here: the demo captions are short byte strings, and a random two-layer encoder
maps different captions to clearly different states; the diffusion transformer learns through its
cross-attention which of them matter (colour, shape, direction). The seed makes it reproducible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

from ..utils.files import atomic_directory

MAX_TOKENS = 80  # bytes + end-of-sequence; the world's longest caption has 72

DEMO_TEXT_CONFIG = dict(
    vocab_size=384,  # ByT5: 3 special tokens + 256 bytes + 125 extra ids
    d_model=64,
    d_kv=16,
    d_ff=128,
    num_layers=2,
    num_heads=4,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=64,
    dropout_rate=0.0,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
)


def build_text_encoder(seed: int = 0) -> tuple[T5EncoderModel, ByT5Tokenizer]:
    """(encoder, tokenizer) with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    encoder = T5EncoderModel(T5Config(**DEMO_TEXT_CONFIG)).eval()
    return encoder, ByT5Tokenizer(model_max_length=MAX_TOKENS)


def save_text_encoder(out_dir: str | Path, seed: int = 0) -> Path:
    """Write encoder + tokenizer as one ``from_pretrained`` folder (what ``--text_encoder_name_1`` takes)."""
    encoder, tokenizer = build_text_encoder(seed)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as staging:
        encoder.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir
