"""soraplan: image-to-video generation and training, compatible with Open-Sora Plan v1.3 checkpoints."""

__version__ = "0.1.0"
