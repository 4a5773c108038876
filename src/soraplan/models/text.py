"""Text encoding: any transformers T5-family encoder (mT5-XXL for the release) from a local folder.

Prompts are tokenised to ``max_length`` tokens (padding and truncation as the reference: 512, "max
length" padding); the encoder's last hidden state and the attention mask are what the transformer
consumes. Padded positions are not zeroed; the transformer masks them.
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoConfig, AutoTokenizer, MT5EncoderModel, T5EncoderModel, UMT5EncoderModel

logger = logging.getLogger(__name__)

ENCODERS = {"mt5": MT5EncoderModel, "t5": T5EncoderModel, "umt5": UMT5EncoderModel}


def load_text_encoder(path: str, dtype: torch.dtype | None = None):
    """(encoder, tokenizer) from a local folder holding a T5/mT5/UMT5 model and its tokenizer."""
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in ENCODERS:
        raise ValueError(f"{path} holds a {model_type!r} model; a T5-family encoder ({', '.join(ENCODERS)}) is needed")
    encoder = ENCODERS[model_type].from_pretrained(path, dtype=dtype)
    return encoder.eval(), AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def encode_text(encoder, tokenizer, prompts: list[str], max_length: int = 512, device=None):
    """prompts -> (states (B, L, C), attention mask (B, L) int64) on ``device`` (default: the encoder's);
    the encoder runs where its weights are (a CPU-resident encoder beside a GPU transformer works)."""
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    lengths = tokenizer(prompts, padding=False, truncation=False)["input_ids"]
    if any(len(ids) > max_length for ids in lengths):
        logger.warning("a prompt is longer than %d tokens and was truncated", max_length)
    ids, mask = tokens.input_ids.to(encoder.device), tokens.attention_mask.to(encoder.device)
    states = encoder(ids, attention_mask=mask)[0]
    device = device or encoder.device
    return states.to(device), mask.to(device)
