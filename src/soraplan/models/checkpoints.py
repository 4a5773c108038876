"""Transformer checkpoint folders: which class a folder holds, what tensors it stores, and the T2V -> I2V
initialisation used when training an inpaint model from a text-to-video checkpoint.

Loading a complete folder is plain ``OpenSoraInpaint.from_pretrained(folder)`` (diffusers handles single
files and sharded ``*.safetensors.index.json`` layouts). This module covers what that does not.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .transformer import OpenSoraInpaint, OpenSoraT2V

logger = logging.getLogger(__name__)

CLASS_NAMES: dict[str, type[OpenSoraT2V]] = {
    "OpenSoraT2V_v1_3": OpenSoraT2V,
    "OpenSoraT2V": OpenSoraT2V,
    "OpenSoraInpaint_v1_3": OpenSoraInpaint,
    "OpenSoraInpaint": OpenSoraInpaint,
}
WEIGHTS_NAME = "diffusion_pytorch_model"


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: pass a transformer folder (config.json + {WEIGHTS_NAME}.safetensors)")
    with open(path) as f:
        return json.load(f)


def transformer_class(config: dict) -> type[OpenSoraT2V]:
    """The class a config describes: its ``_class_name``, else inpaint iff it has ``vae_scale_factor_t``."""
    name = config.get("_class_name")
    if name in CLASS_NAMES:
        return CLASS_NAMES[name]
    if name is not None:
        raise ValueError(f"config _class_name {name!r} is not a v1.3 transformer (expected one of {', '.join(CLASS_NAMES)})")
    return OpenSoraInpaint if "vae_scale_factor_t" in config else OpenSoraT2V


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a folder: the shards named by an index, or the single file."""
    folder = Path(folder)
    index = folder / f"{WEIGHTS_NAME}.safetensors.index.json"
    if index.is_file():
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [folder / shard for shard in shards]
    single = folder / f"{WEIGHTS_NAME}.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{folder} has neither {single.name} nor {index.name}")


def checkpoint_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every stored tensor, read from the safetensors headers only (no tensor data)."""
    shapes = {}
    for path in weight_files(folder):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def read_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    state = {}
    for path in weight_files(folder):
        state.update(load_file(str(path)))
    return state


@dataclass
class InpaintInitReport:
    """What :func:`init_inpaint_from_t2v` did with every parameter of the inpaint model."""

    copied: list[str] = field(default_factory=list)
    from_pos_embed: list[str] = field(default_factory=list)
    zeroed: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


@torch.no_grad()
def init_inpaint_from_t2v(model: OpenSoraInpaint, state_dict: dict[str, torch.Tensor]) -> InpaintInitReport:
    """Initialise an inpaint model from a T2V (or inpaint) state dict, in place.

    * every key present with the same shape is copied;
    * the masked-video patch embedding, if the source lacks it, starts as a copy of ``pos_embed``;
    * the two bias-free conditioning linears, if the source lacks them, are zeroed, so the new model
      computes exactly what the T2V model computes whatever the conditioning input.

    Unlike the reference, keys are matched by shape (not element count) and an inpaint checkpoint's own
    masked-video embedding is never overwritten.
    """
    report = InpaintInitReport()
    own = model.state_dict()
    for key, target in own.items():
        source = state_dict.get(key)
        if source is None:
            continue
        if source.shape != target.shape:
            report.shape_mismatch.append(key)
            continue
        target.copy_(source)
        report.copied.append(key)
    report.unused = sorted(set(state_dict) - set(own))

    for suffix in ("weight", "bias"):
        key = f"pos_embed_masked_hidden_states.0.proj.{suffix}"
        if key not in state_dict:
            own[key].copy_(own[f"pos_embed.proj.{suffix}"])
            report.from_pos_embed.append(key)
    for key in ("pos_embed_masked_hidden_states.1.weight", "pos_embed_mask.1.weight"):
        if key not in state_dict:
            own[key].zero_()
            report.zeroed.append(key)
    handled = set(report.copied) | set(report.from_pos_embed) | set(report.zeroed)
    report.kept_init = [key for key in own if key not in handled]
    if report.shape_mismatch:
        logger.warning("not copied (shape differs from the model): %s", ", ".join(report.shape_mismatch))
    return report


def inpaint_from_t2v_pretrained(folder: str | Path, **config_overrides) -> tuple[OpenSoraInpaint, InpaintInitReport]:
    """Build an inpaint model with a T2V folder's config and initialise it from the folder's weights."""
    config = {k: v for k, v in read_config(folder).items() if not k.startswith("_")}
    config.update(config_overrides)
    config.setdefault("vae_scale_factor_t", 4)
    model = OpenSoraInpaint.from_config(config)
    report = init_inpaint_from_t2v(model, read_state_dict(folder))
    return model, report


@dataclass
class CheckpointCheck:
    """A folder's stored tensors compared with the architecture its config describes."""

    model_class: type[OpenSoraT2V]
    config: dict
    num_parameters: int
    layer_kinds: list[str]
    stored: dict[str, tuple[int, ...]]
    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)


def check_checkpoint_folder(folder: str | Path) -> CheckpointCheck:
    """Compare key names and shapes of a folder with its config's architecture, without loading weights."""
    config = read_config(folder)
    cls = transformer_class(config)
    with torch.device("meta"):
        model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    stored = checkpoint_shapes(folder)
    return CheckpointCheck(
        model_class=cls,
        config=config,
        num_parameters=sum(p.numel() for p in model.parameters()),
        layer_kinds=model.layer_kinds,
        stored=stored,
        missing=sorted(set(expected) - set(stored)),
        unexpected=sorted(set(stored) - set(expected)),
        wrong_shape=sorted((k, stored[k], expected[k]) for k in set(stored) & set(expected) if stored[k] != expected[k]),
    )
