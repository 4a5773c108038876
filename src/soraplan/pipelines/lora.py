"""LoRA adapters on the pipeline's transformer, in diffusers' manner.

An adapter file is what diffusers' LoRA loaders read and write: ``pytorch_lora_weights.safetensors``
with peft key names under the ``transformer.`` prefix (``transformer.<module>.lora_A.weight`` (r, in),
``... .lora_B.weight`` (out, r)) and the adapter's peft config in the safetensors metadata
(``lora_adapter_metadata``). The pipeline gets ``load_lora_weights`` / ``set_adapters`` /
``fuse_lora`` / ``unfuse_lora`` / ``unload_lora_weights`` / ``save_lora_weights`` from diffusers'
``LoraBaseMixin``; the transformer's side is diffusers' ``PeftAdapterMixin``.

What this module adds is the check before anything is injected: an adapter made for another
architecture (a module this transformer lacks, or another width) or with a broken rank layout (A and
B of different ranks) is refused with one sentence naming the first mismatch, instead of peft's
shape error deep inside ``load_state_dict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY, LORA_WEIGHT_NAME_SAFE, LoraBaseMixin

PREFIX = "transformer"


def adapter_file(path: str | Path, weight_name: str | None = None) -> Path:
    """The adapter's weights file: ``path`` itself, or the LoRA file inside a folder."""
    path = Path(path)
    return path / (weight_name or LORA_WEIGHT_NAME_SAFE) if path.is_dir() else path


def read_lora_file(source: str | Path | dict, weight_name: str | None = None) -> tuple[dict, dict | None]:
    """(state dict, adapter metadata or None) from an adapter folder, a .safetensors file or a dict."""
    if isinstance(source, dict):
        return dict(source), None
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = adapter_file(source, weight_name)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA {source}: no {path.name} there (an adapter folder holds "
                                f"{LORA_WEIGHT_NAME_SAFE}; `soraplan train --lora_rank` writes one)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(LORA_ADAPTER_METADATA_KEY)
        state_dict = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"LoRA {source}: {path.name} is not a readable safetensors file ({error})") from None
    return state_dict, json.loads(raw) if raw else None


def save_scaled_adapter(source: str | Path, scale: float, out_dir: str | Path) -> Path:
    """Write ``source``'s adapter into the new folder ``out_dir`` with every ``lora_B`` times ``scale``:
    the update ``(alpha / r) * B @ A`` of each layer is then ``scale`` times the original, so the copy at
    weight 1 is the original at weight ``scale`` (exact up to float rounding). The metadata (peft config:
    rank, alpha, targets) is kept as it is. Written whole, then renamed."""
    from ..utils.files import atomic_directory

    state_dict, metadata = read_lora_file(source)
    if not any(".lora_B." in key for key in state_dict):
        raise ValueError(f"LoRA {source}: holds no lora_B weights to scale")
    scaled = {key: value * scale if ".lora_B." in key else value for key, value in state_dict.items()}
    layers = {key.removeprefix(f"{PREFIX}."): value for key, value in scaled.items()}
    config = {key.removeprefix(f"{PREFIX}."): value for key, value in (metadata or {}).items()} or None
    with atomic_directory(out_dir) as folder:
        OpenSoraLoraLoaderMixin.save_lora_weights(folder, transformer_lora_layers=layers,
                                                  transformer_lora_adapter_metadata=config)
    return Path(out_dir)


def check_lora_fits(transformer: torch.nn.Module, state_dict: dict, name: str) -> None:
    """Raise ValueError (one sentence) unless every lora_A / lora_B pair fits a Linear of ``transformer``."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        module_key = key.removeprefix(f"{PREFIX}.")
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in module_key:
                pairs.setdefault(module_key.split(marker)[0], {})[part] = value
                break
        else:
            if "lora" not in key:
                raise ValueError(f"LoRA {name}: {key!r} is not a LoRA weight (expected peft names such as "
                                 f"'{PREFIX}.transformer_blocks.0.attn1.to_q.lora_A.weight')")
    if not pairs:
        raise ValueError(f"LoRA {name}: holds no lora_A / lora_B weights")
    modules = dict(transformer.named_modules())
    for module_name, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"LoRA {name}: {module_name} has {' '.join(pair)} but not both lora_A and lora_B")
        down, up = pair["lora_A"], pair["lora_B"]
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
            raise ValueError(f"LoRA {name}: rank layout broken at {module_name}: lora_A {tuple(down.shape)} and "
                             f"lora_B {tuple(up.shape)} do not share a rank")
        target = modules.get(module_name)
        target = getattr(target, "base_layer", target)  # a module that already carries an adapter
        if not isinstance(target, torch.nn.Linear):
            layers = len(getattr(transformer, "transformer_blocks", []))
            raise ValueError(f"LoRA {name} was made for another architecture: it adapts {module_name}, which this "
                             f"transformer ({layers} layers, hidden {getattr(transformer, 'hidden_size', '?')}) "
                             "does not have as a linear layer")
        if (up.shape[0], down.shape[1]) != (target.out_features, target.in_features):
            raise ValueError(f"LoRA {name} was made for another architecture: {module_name} is {target.in_features} -> "
                             f"{target.out_features} here, the adapter's is {down.shape[1]} -> {up.shape[0]}")


def inject_lora(transformer, source, adapter_name: str | None = None, weight_name: str | None = None,
                hotswap: bool = False, pipeline=None) -> None:
    """Check an adapter (folder, .safetensors file or state dict) against ``transformer``, then load it
    through diffusers' ``PeftAdapterMixin.load_lora_adapter``."""
    state_dict, metadata = read_lora_file(source, weight_name)
    shown = str(Path(source) / weight_name) if weight_name and not isinstance(source, dict) else str(
        source if not isinstance(source, dict) else adapter_name or "the adapter")
    check_lora_fits(transformer, state_dict, shown)
    if adapter_name in (getattr(transformer, "peft_config", None) or {}) and not hotswap:
        raise ValueError(f"an adapter named {adapter_name!r} is already loaded: give another name, or "
                         "unload_lora_weights() / delete_adapters() first")
    with warnings.catch_warnings():  # peft warns on every adapter after the first; several are supported
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        transformer.load_lora_adapter(state_dict, prefix=PREFIX, adapter_name=adapter_name, metadata=metadata,
                                      _pipeline=pipeline, hotswap=hotswap)


class OpenSoraLoraLoaderMixin(LoraBaseMixin):
    """LoRA loading and saving for ``OpenSoraInpaintPipeline`` (the transformer only)."""

    _lora_loadable_modules = [PREFIX]
    transformer_name = PREFIX

    @classmethod
    def lora_state_dict(cls, pretrained_model_name_or_path_or_dict, weight_name: str | None = None,
                        return_lora_metadata: bool = False, **kwargs):
        """The adapter's weights (peft names, ``transformer.`` prefix) and, if asked, its metadata."""
        state_dict, metadata = read_lora_file(pretrained_model_name_or_path_or_dict, weight_name)
        return (state_dict, metadata) if return_lora_metadata else state_dict

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None,
                          hotswap: bool = False, weight_name: str | None = None, **kwargs) -> None:
        """Inject an adapter (a folder, a .safetensors file or a state dict) into the transformer, active
        at weight 1; several adapters combine with ``set_adapters(names, weights)``."""
        inject_lora(self.transformer, pretrained_model_name_or_path_or_dict, adapter_name, weight_name, hotswap,
                    pipeline=self)

    @classmethod
    def save_lora_weights(cls, save_directory, transformer_lora_layers=None, is_main_process: bool = True,
                          weight_name: str | None = None, save_function=None, safe_serialization: bool = True,
                          transformer_lora_adapter_metadata: dict | None = None) -> None:
        """Write ``transformer_lora_layers`` (peft names, no prefix) as diffusers' LoRA file."""
        if not transformer_lora_layers:
            raise ValueError("save_lora_weights needs transformer_lora_layers (the adapter's state dict)")
        cls._save_lora_weights(save_directory=save_directory, lora_layers={PREFIX: transformer_lora_layers},
                               lora_metadata={PREFIX: transformer_lora_adapter_metadata},
                               is_main_process=is_main_process, weight_name=weight_name,
                               save_function=save_function, safe_serialization=safe_serialization)

    def fuse_lora(self, components: list[str] | None = None, lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names: list[str] | None = None, **kwargs) -> None:
        """Merge the active adapters (at their ``set_adapters`` weights, times ``lora_scale``) into the
        transformer's weights: sampling then costs what the base model costs."""
        super().fuse_lora(components=components or [PREFIX], lora_scale=lora_scale, safe_fusing=safe_fusing,
                          adapter_names=adapter_names, **kwargs)

    def unfuse_lora(self, components: list[str] | None = None, **kwargs) -> None:
        super().unfuse_lora(components=components or [PREFIX], **kwargs)


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``PATH[:SCALE]`` of ``--lora`` -> (path, scale); a path may itself hold ':' (the last one with a
    number after it is the scale)."""
    path, sep, tail = spec.rpartition(":")
    if sep:
        try:
            return path, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def resolve_lora_specs(specs: list[str] | None, weight_name: str | None = None) -> list[tuple[Path, float]]:
    """``--lora`` values -> [(adapter file, scale)], each file checked to exist (before any model loads).

    A value that is no path but the name of an adapter shipped beside the demo model (``--lora
    diagonal``) means that adapter; a folder or file of that name wins."""
    from ..demo.assets import DEMO_LORAS, demo_lora_names

    resolved = []
    for spec in specs or []:
        path, scale = parse_lora_spec(spec)
        file = adapter_file(path, weight_name)
        if not file.is_file() and not Path(path).exists() and path in demo_lora_names():
            file = adapter_file(DEMO_LORAS / path, weight_name)
        if not file.is_file():
            shipped = ", ".join(demo_lora_names()) or "none"
            raise FileNotFoundError(f"--lora {spec}: no adapter at {path} (give an adapter folder holding "
                                    f"{LORA_WEIGHT_NAME_SAFE}, the .safetensors file, or the name of one shipped "
                                    f"with the demo model ({shipped}), optionally :SCALE)")
        resolved.append((file, scale))
    return resolved


def adapter_names(files: list[Path]) -> list[str]:
    """One distinct adapter name per file: its folder's name (or the file's stem), numbered on clashes."""
    names: list[str] = []
    for file in files:
        base = file.parent.name if file.name == LORA_WEIGHT_NAME_SAFE else file.stem
        base = "".join(c if c.isalnum() or c in "_-" else "_" for c in base) or "lora"
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def apply_loras(target, loras: list[tuple[Path, float]], fuse: bool = False) -> list[str]:
    """Load every (file, scale) into ``target`` (a pipeline, or a transformer alone) and activate them
    together at their scales; with ``fuse`` merge them into the weights and drop the adapter layers
    (the base model's speed, and what ``--fuse_qkv`` and ``--compile`` expect). Returns the names."""
    if not loras:
        return []
    transformer = getattr(target, "transformer", target)
    pipeline = target if transformer is not target else None
    names = adapter_names([file for file, _ in loras])
    for (file, _), name in zip(loras, names):
        inject_lora(transformer, str(file.parent), name, file.name, pipeline=pipeline)
    transformer.set_adapters(names, [scale for _, scale in loras])
    if fuse:
        transformer.fuse_lora(adapter_names=names)
        transformer.unload_lora()
    return names
