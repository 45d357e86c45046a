"""Checkpoint reading, writing and conversion for every supported format."""
from vit_jax.checkpoints.errors import CheckpointError
from vit_jax.checkpoints.formats import detect_format, load_params, save_params

__all__ = ['CheckpointError', 'detect_format', 'load_params', 'save_params']
