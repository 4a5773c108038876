"""Loading a text encoder and its tokenizer from the folder layouts users point --text_encoder_name_1 at."""

from __future__ import annotations

import pytest
import torch

from soraplan.models.text import encode_text, load_text_encoder

from ..conftest import build_tiny_pipeline

CAPTION = "a red circle moves up and to the right on a black background"


@pytest.fixture(scope="module")
def pipe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text") / "pipeline"
    pipe = build_tiny_pipeline()
    pipe.save_pretrained(folder)
    return pipe, folder


def test_a_pipelines_text_encoder_folder_reads_captions_with_the_pipelines_tokenizer(pipe_folder):
    """A pipeline keeps its tokenizer in tokenizer/, not beside the encoder's weights; the trainer's text
    states for a caption must be the pipeline's (before, an empty-vocabulary tokenizer made every word
    <unk>, and a model trained on that never read its captions)."""
    pipe, folder = pipe_folder
    assert not (folder / "text_encoder" / "tokenizer_config.json").exists()
    encoder, tokenizer = load_text_encoder(str(folder / "text_encoder"))
    assert tokenizer(CAPTION).input_ids == pipe.tokenizer(CAPTION).input_ids
    assert tokenizer.unk_token_id not in tokenizer(CAPTION).input_ids
    states, mask = encode_text(encoder, tokenizer, [CAPTION, "a blue square"], 80)
    want_states, want_mask = encode_text(pipe.text_encoder, pipe.tokenizer, [CAPTION, "a blue square"], 80)
    assert torch.equal(mask, want_mask)
    assert torch.allclose(states, want_states, atol=1e-6)


def test_a_folder_with_the_encoder_and_its_tokenizer_loads_from_itself(pipe_folder, tmp_path):
    pipe, _ = pipe_folder
    pipe.text_encoder.save_pretrained(tmp_path / "t5")
    pipe.tokenizer.save_pretrained(tmp_path / "t5")
    _, tokenizer = load_text_encoder(str(tmp_path / "t5"))
    assert tokenizer(CAPTION).input_ids == pipe.tokenizer(CAPTION).input_ids


def test_a_folder_without_a_tokenizer_is_a_one_line_error(pipe_folder, tmp_path):
    pipe, _ = pipe_folder
    pipe.text_encoder.save_pretrained(tmp_path / "encoder_only")
    with pytest.raises(ValueError) as error:
        load_text_encoder(str(tmp_path / "encoder_only"))
    message = str(error.value)
    assert "holds no tokenizer" in message and "encoder_only" in message and "\n" not in message
