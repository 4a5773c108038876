"""Text encoding: any transformers T5-family encoder (mT5-XXL for the release) from a local folder.

Prompts are tokenised to ``max_length`` tokens (padding and truncation as the reference: 512, "max
length" padding); the encoder's last hidden state and the attention mask are what the transformer
consumes. Padded positions are not zeroed; the transformer masks them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, MT5EncoderModel, T5EncoderModel, UMT5EncoderModel

logger = logging.getLogger(__name__)

ENCODERS = {"mt5": MT5EncoderModel, "t5": T5EncoderModel, "umt5": UMT5EncoderModel}


# Files of which at least one is in every saved transformers tokenizer folder (a byte-level ByT5
# tokenizer, like the demo's, saves no vocabulary, only its config).
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "spiece.model")


def tokenizer_folder(path: str | Path) -> Path:
    """Where the tokenizer of the text encoder in ``path`` is saved: ``path`` itself (mT5-XXL's layout),
    or, for a diffusers pipeline's ``text_encoder/``, the ``tokenizer/`` beside it.

    Why: asked for a folder without tokenizer files, ``AutoTokenizer`` does not fail but builds a T5
    tokenizer with an empty vocabulary that turns every word into ``<unk>``; a model trained on that
    never reads its captions. So a folder with no tokenizer anywhere is an error here."""
    folder = Path(path)
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return folder
    sibling = folder.parent / "tokenizer"
    if (folder.parent / "model_index.json").is_file() and any((sibling / name).is_file() for name in TOKENIZER_FILES):
        return sibling
    raise ValueError(f"{path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): give a text encoder folder "
                     "saved with its tokenizer, or a pipeline's text_encoder/ folder with its tokenizer/ beside it")


def load_text_encoder(path: str, dtype: torch.dtype | None = None):
    """(encoder, tokenizer) from a local folder holding a T5/mT5/UMT5 model and its tokenizer (in the
    same folder, or in ``../tokenizer`` when it is a pipeline's ``text_encoder/``)."""
    model_type = AutoConfig.from_pretrained(path).model_type
    if model_type not in ENCODERS:
        raise ValueError(f"{path} holds a {model_type!r} model; a T5-family encoder ({', '.join(ENCODERS)}) is needed")
    tokenizer_path = tokenizer_folder(path) if Path(path).is_dir() else path
    encoder = ENCODERS[model_type].from_pretrained(path, dtype=dtype)
    return encoder.eval(), AutoTokenizer.from_pretrained(tokenizer_path)


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
