"""Import the reference Open-Sora Plan v1.3 transformer from a source checkout, for side-by-side benchmarks.

    git clone https://github.com/PKU-YuanGroup/Open-Sora-Plan && git -C Open-Sora-Plan checkout v1.3.1
    python bench/transformer.py --reference Open-Sora-Plan

Only the model files are imported. The packages' ``__init__`` files (which pull in the VAE, data and
training stacks) are bypassed, and optional imports the model files reach only transitively (wandb,
tensorboard) get empty stand-ins when they are not installed. On CPU the reference's "memory-efficient
SDPA kernel only" context cannot run, so there it is replaced by PyTorch's default kernel choice, the
same choice our model gets; on CUDA the reference runs as released.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import sys
import types
from pathlib import Path

import torch

MODULE = "opensora.models.diffusion.opensora_v1_3.modeling_inpaint"
T2V_MODULE = "opensora.models.diffusion.opensora_v1_3.modeling_opensora"


def _bare_package(name: str, folder: Path) -> None:
    """Register ``name`` as a package living in ``folder`` without running its __init__.py."""
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package


def _stand_in(name: str, **attributes) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = module


class _NoWriter:
    def __init__(self, *args, **kwargs):
        pass


def load_reference(checkout: str | Path, device: str = "cpu", cpu_attention: str = "default"):
    """(inpaint class, t2v class) of the reference at ``checkout`` (the repository's root).

    ``cpu_attention``: "default" lets PyTorch pick the SDPA kernel on CPU (as ours gets); "math" uses the
    exact math kernel, which is how the parity fixtures ran the reference on CPU."""
    root = Path(checkout).resolve()
    if not (root / "opensora" / "models" / "diffusion" / "opensora_v1_3" / "modeling_inpaint.py").is_file():
        raise SystemExit(f"{root} is not an Open-Sora-Plan v1.3 checkout (opensora/models/diffusion/opensora_v1_3 missing)")
    sys.path.insert(0, str(root))
    for name in ("opensora", "opensora.models", "opensora.models.diffusion"):
        _bare_package(name, root / Path(*name.split(".")))
    import accelerate  # noqa: F401  (imported first: they probe for optional packages at import time)
    import diffusers  # noqa: F401

    _stand_in("wandb")
    _stand_in("torch.utils.tensorboard", SummaryWriter=_NoWriter)
    if device == "cpu":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        choice = {"default": contextlib.nullcontext, "math": lambda: sdpa_kernel(SDPBackend.MATH)}[cpu_attention]
        torch.backends.cuda.sdp_kernel = lambda *args, **kwargs: choice()
    inpaint = importlib.import_module(MODULE).OpenSoraInpaint_v1_3
    t2v = importlib.import_module(T2V_MODULE).OpenSoraT2V_v1_3
    return inpaint, t2v
