"""vit-jax: the Vision Transformer family in JAX/Flax."""
from vit_jax import accelerators as _accelerators

_accelerators.use_cpu_without_one()  # before JAX starts a backend: a quiet libtpu

__all__ = ['create_model', 'get_model_config', 'list_models', 'load_params']


def __getattr__(name):
  # Resolved on first use: `import vit_jax.data...` in an input worker process
  # then imports neither JAX nor Flax, nor the checkpoint readers.
  if name in ('create_model', 'get_model_config', 'list_models', 'models'):
    from vit_jax.models import registry  # binds vit_jax.models as well
    return globals()['models'] if name == 'models' else getattr(registry, name)
  if name == 'load_params':
    from vit_jax.checkpoints import load_params
    return load_params
  raise AttributeError(name)
