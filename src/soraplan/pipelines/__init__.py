"""Inference pipelines (diffusers ``DiffusionPipeline`` style)."""

from .inpaint import OpenSoraInpaintPipeline, OpenSoraPipelineOutput, load_pipeline

__all__ = ["OpenSoraInpaintPipeline", "OpenSoraPipelineOutput", "load_pipeline"]
