"""The caption refiner: an instruction-tuned causal language model that rewrites a short prompt into the
long, detailed kind of caption the video model was trained on (``--caption_refiner`` / ``--refine_caption``).

The release's refiner (``LanguageBind/Open-Sora-Plan-v1.3.0/prompt_refiner``) is a LoRA fine-tune of
Llama-3.1-8B-Instruct; any transformers causal LM with a chat template works. We ask it the way the
reference does (its system message and instruction, verbatim: the release's refiner was tuned on that
wording, stray quotes included), decode greedily, and keep only the newly generated text.

Unlike the reference, refining is not skipped for image-to-video: the user asked for it, and the refined
prompt is printed (and recorded in the output's sidecar) so its effect can be judged.
"""

from __future__ import annotations

import torch

SYSTEM_MESSAGE = "You are a caption refiner."
# The reference's instruction as its Python source evaluates it (its line continuations leave `" "` pairs).
INSTRUCTION = (
    '\nRefine the sentence: "{}" to contain subject description, action, scene description. " "(Optional: '
    'camera language, light and shadow, atmosphere) and conceive some additional actions to make the sentence '
    'more dynamic. " "Make sure it is a fluent sentence, not nonsense.\n'
)
MAX_NEW_TOKENS = 512


class CaptionRefiner:
    """``refiner(prompt) -> refined prompt`` with a causal LM and its tokenizer (chat template required)."""

    def __init__(self, model, tokenizer, max_new_tokens: int = MAX_NEW_TOKENS):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the caption refiner's tokenizer has no chat template: use an instruction-tuned "
                             "(chat) model")
        self.model, self.tokenizer, self.max_new_tokens = model.eval(), tokenizer, max_new_tokens

    @classmethod
    def from_pretrained(cls, folder: str, dtype: torch.dtype | None = None, device=None) -> "CaptionRefiner":
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        model_type = AutoConfig.from_pretrained(folder).model_type
        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ValueError(f"{folder} holds a {model_type!r} model, not a causal language model")
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        return cls(model.to(device) if device is not None else model, AutoTokenizer.from_pretrained(folder))

    def chat_text(self, prompt: str) -> str:
        """The text the model continues: system message, the instruction around ``prompt``, assistant turn."""
        messages = [{"role": "system", "content": SYSTEM_MESSAGE},
                    {"role": "user", "content": INSTRUCTION.format(prompt)}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def __call__(self, prompt: str) -> str:
        inputs = self.tokenizer([self.chat_text(prompt)], return_tensors="pt", add_special_tokens=False)
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                     pad_token_id=pad)  # (1, prompt tokens + new tokens)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
