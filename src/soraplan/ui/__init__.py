"""The web UI (``soraplan serve``): request checking in ``requests`` (no gradio), the page in ``app``."""
