"""The caption refiner: the reference's instruction through a chat template, greedy, only the new text."""

from __future__ import annotations

import pytest

from soraplan.models.caption_refiner import INSTRUCTION, SYSTEM_MESSAGE, CaptionRefiner

from ..conftest import build_tiny_pipeline, build_tiny_refiner


@pytest.fixture(scope="module")
def refiner_folder(tmp_path_factory):
    return build_tiny_refiner(tmp_path_factory.mktemp("refiner") / "refiner")


def test_asks_with_the_reference_instruction_and_returns_only_new_words(refiner_folder):
    refiner = CaptionRefiner.from_pretrained(str(refiner_folder))
    prompt = "a red circle moves to the right"
    chat = refiner.chat_text(prompt)
    assert SYSTEM_MESSAGE in chat and INSTRUCTION.format(prompt) in chat and chat.rstrip().endswith("<|assistant|>")
    refined = refiner(prompt)
    assert refined and refined != prompt
    assert "<|assistant|>" not in refined and "Refine the sentence" not in refined  # the question is not echoed
    assert refiner(prompt) == refined  # greedy: the same prompt always gives the same caption
    assert refiner("a blue square moves up") != refined


def test_refuses_what_cannot_refine(refiner_folder, tmp_path):
    build_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    with pytest.raises(ValueError, match="not a causal language model"):
        CaptionRefiner.from_pretrained(str(tmp_path / "pipe" / "text_encoder"))
    build_tiny_refiner(tmp_path / "plain", chat_template=False)
    with pytest.raises(ValueError, match="no chat template"):
        CaptionRefiner.from_pretrained(str(tmp_path / "plain"))
