"""Shared test helpers: where the reference fixtures live, and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(os.environ.get("SORAPLAN_PARITY_DIR", ROOT.parent / "shared" / "parity"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def require_parity_dir() -> Path:
    """The reference fixtures; a hard failure in CI (they must be there), a skip elsewhere."""
    if PARITY_DIR.is_dir():
        return PARITY_DIR
    message = f"parity fixtures not found at {PARITY_DIR} (set SORAPLAN_PARITY_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def randomize_(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Overwrite every trainable parameter with N(0, std²), so zero-initialised branches are active in tests.

    Frozen parameters (the WF-VAE's Haar filters) keep their constructed values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def make_videos(folder: Path, count: int, frames: int = 12, size: int = 32, seed: int = 0) -> list[Path]:
    """Real mp4 files: a coloured square moving over a gradient background."""
    import numpy as np

    from soraplan.data import write_video

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        background = np.linspace(0, 1, size)[None, :, None] * rng.uniform(0, 255, 3)[None, None, :]
        colour = rng.uniform(0, 255, 3)
        side = size // 4
        x0, y0 = rng.integers(0, size - side, 2)
        dx, dy = rng.integers(-1, 2, 2)
        video = np.empty((frames, size, size, 3), dtype=np.uint8)
        for t in range(frames):
            frame = np.broadcast_to(background, (size, size, 3)).copy()
            x = int(np.clip(x0 + dx * t, 0, size - side))
            y = int(np.clip(y0 + dy * t, 0, size - side))
            frame[y:y + side, x:x + side] = colour
            video[t] = frame.astype(np.uint8)
        path = folder / f"clip{index:03d}.mp4"
        write_video(path, video, fps=8)
        paths.append(path)
    return paths


def build_tiny_pipeline(seed: int = 0, t2v: bool = False):
    """A complete I2V (or T2V) pipeline with tiny random components: real classes, real tokenizer, no files."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    from soraplan.models import WFVAE, build_inpaint, build_t2v
    from soraplan.pipelines import OpenSoraInpaintPipeline
    from soraplan.schedulers import build_scheduler

    torch.manual_seed(seed)
    transformer = randomize_((build_t2v if t2v else build_inpaint)("tiny"), std=0.05, seed=seed).eval()
    vae = WFVAE(base_channels=8, encoder_energy_flow_hidden_size=8, decoder_energy_flow_hidden_size=8,
                norm_type="layernorm", t_interpolation="trilinear").eval()
    text_encoder = T5EncoderModel(T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4))
    return OpenSoraInpaintPipeline(transformer, vae, text_encoder.eval(), ByT5Tokenizer(), build_scheduler())


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


REFINER_WORDS = ("a red blue green circle square triangle moves slowly quickly to the left right up down on "
                 "black background bright light camera pans scene calm night sunset lake boat sails across").split()


def build_tiny_refiner(folder: Path, seed: int = 0, chat_template: bool = True) -> Path:
    """A caption refiner as the release ships one (a Llama causal LM + a tokenizer with a chat template),
    tiny and random: it rewrites a prompt into other words of its vocabulary, deterministically."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    vocab = {word: i for i, word in enumerate(specials + list(dict.fromkeys(REFINER_WORDS)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = template
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"]))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
