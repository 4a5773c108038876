"""Where the embedded demo model and its example inputs live inside the installed package."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_PIPELINE = ASSETS / "pipeline"
DEMO_EXAMPLES = ASSETS / "examples"
DEMO_STUDENT = ASSETS / "student"  # the demo model's few-step student, one step by default (scripts/demo/distill_demo_model.sh)
DEMO_LORAS = ASSETS / "loras"  # LoRA adapters of the demo model, one folder each (scripts/demo/train_demo_lora.sh)


def demo_pipeline_path() -> Path:
    """The shipped pipeline folder; a clear error when an install lacks it."""
    if not (DEMO_PIPELINE / "model_index.json").is_file():
        raise FileNotFoundError(f"the embedded demo pipeline is missing ({DEMO_PIPELINE}); reinstall soraplan, "
                                "or rebuild it with scripts/demo/train_demo_model.sh")
    return DEMO_PIPELINE


def demo_student_path() -> Path:
    """The shipped few-step student (``soraplan demo --fast``); a clear error when an install lacks it."""
    if not (DEMO_STUDENT / "model_index.json").is_file():
        raise FileNotFoundError(f"the embedded demo student is missing ({DEMO_STUDENT}); reinstall soraplan, "
                                "or distil it with scripts/demo/distill_demo_model.sh")
    return DEMO_STUDENT


def demo_lora_names() -> list[str]:
    """Names of the adapters shipped beside the demo model (``--lora NAME``)."""
    if not DEMO_LORAS.is_dir():
        return []
    return sorted(folder.name for folder in DEMO_LORAS.iterdir() if (folder / "pytorch_lora_weights.safetensors").is_file())
