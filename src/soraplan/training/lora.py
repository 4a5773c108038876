"""LoRA training: peft adapters on the transformer, and checkpoints that hold the adapter only.

``soraplan train --lora_rank R`` (and ``soraplan distill --lora_rank R``) freezes the transformer and
adds a peft LoRA adapter through diffusers' ``PeftAdapterMixin.add_adapter``; only the adapter trains
(optimizer, EMA, gradient clipping see its parameters alone). Everything the run writes holds the
adapter only:

- ``checkpoint-N/accelerate_state``: the adapter's weights (``adapter_model.safetensors``) instead of
  the model's, through accelerate's state hooks; under DeepSpeed its own checkpoint without the frozen
  parameters (``exclude_frozen_parameters``), loaded back non-strictly. The frozen base is rebuilt from
  ``--model`` / ``--pretrained`` at start, identically, so a resume needs nothing else.
- ``checkpoint-N/lora`` (and ``lora_ema``) and the final ``<output_dir>/lora`` (and ``lora_ema``):
  diffusers' LoRA file (``pytorch_lora_weights.safetensors``, ``transformer.`` prefixed peft names,
  the adapter config in its metadata), what ``load_lora_weights`` and ``--lora`` read.
"""

from __future__ import annotations

from pathlib import Path

import torch

ADAPTER = "default"
STATE_FILE = "adapter_model.safetensors"  # inside accelerate_state


def lora_config(rank: int, alpha: float | None, target_modules: str, dropout: float):
    """The peft LoraConfig of the flags (alpha defaults to the rank: a scale of 1)."""
    from peft import LoraConfig

    targets = [name.strip() for name in target_modules.split(",") if name.strip()]
    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, target_modules=targets,
                      lora_dropout=dropout, init_lora_weights=True)


def attach_lora(model: torch.nn.Module, config) -> None:
    """Freeze ``model`` and add the adapter (B = 0: the model is unchanged until it trains); a target
    name that matches no linear layer is a ValueError naming the ones there are."""
    model.requires_grad_(False)
    try:
        model.add_adapter(config, adapter_name=ADAPTER)
    except ValueError as error:
        linear = sorted({name.rsplit(".", 1)[-1] if not name.rsplit(".", 1)[-1].isdigit() else
                         ".".join(name.rsplit(".", 2)[-2:]) for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise ValueError(f"--lora_target_modules {','.join(sorted(config.target_modules))}: {error}; the "
                         f"transformer's linear layers are named {', '.join(linear)}") from None


def has_lora(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "peft_config", None))


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights under peft names, without the adapter name (what diffusers saves)."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model, adapter_name=ADAPTER).items()}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"the checkpoint's adapter does not fit this run's (--lora_rank / --lora_target_modules "
                         f"changed?): unexpected {unexpected[:3]}")


def save_adapter(model: torch.nn.Module, folder: str | Path, state: dict | None = None) -> None:
    """Write diffusers' LoRA file for ``model``'s adapter (or ``state``) into ``folder`` (created)."""
    from ..pipelines import OpenSoraInpaintPipeline

    metadata = model.peft_config[ADAPTER].to_dict()
    OpenSoraInpaintPipeline.save_lora_weights(folder, transformer_lora_layers=state or adapter_state(model),
                                              transformer_lora_adapter_metadata=metadata)


def register_adapter_checkpointing(accelerator) -> None:
    """accelerate's save/load state hooks: the adapter's weights in place of the whole model's."""
    from safetensors.torch import load_file, save_file

    def save(models, weights, output_dir):
        if not weights:  # DeepSpeed saves its own checkpoint (without the frozen parameters)
            return
        for index in reversed(range(len(models))):
            model = accelerator.unwrap_model(models[index])
            if has_lora(model):
                save_file(adapter_state(model), str(Path(output_dir) / STATE_FILE))
                weights.pop(index)

    def load(models, input_dir):
        for index in reversed(range(len(models))):
            model = accelerator.unwrap_model(models[index])
            if has_lora(model):
                load_adapter_state(model, load_file(str(Path(input_dir) / STATE_FILE)))
                models.pop(index)

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)
