"""vit-jax: the Vision Transformer family in JAX/Flax."""
from vit_jax.models.registry import create_model, get_model_config, list_models

__all__ = ['create_model', 'get_model_config', 'list_models', 'load_params']


def __getattr__(name):
  # load_params pulls in the checkpoint readers; import them on first use.
  if name == 'load_params':
    from vit_jax.checkpoints import load_params
    return load_params
  raise AttributeError(name)
