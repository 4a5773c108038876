"""Where the embedded demo model and its example inputs live inside the installed package."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_PIPELINE = ASSETS / "pipeline"
DEMO_EXAMPLES = ASSETS / "examples"


def demo_pipeline_path() -> Path:
    """The shipped pipeline folder; a clear error when an install lacks it."""
    if not (DEMO_PIPELINE / "model_index.json").is_file():
        raise FileNotFoundError(f"the embedded demo pipeline is missing ({DEMO_PIPELINE}); reinstall soraplan, "
                                "or rebuild it with scripts/demo/train_demo_model.sh")
    return DEMO_PIPELINE
