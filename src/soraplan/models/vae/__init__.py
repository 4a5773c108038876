"""WF-VAE: the wavelet-flow causal video autoencoder of Open-Sora Plan v1.3."""

from .wfvae import WFVAE, check_video_shape, chunk_bounds

__all__ = ["WFVAE", "check_video_shape", "chunk_bounds"]
