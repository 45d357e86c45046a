"""The training step a config asks for, built for given devices.

One builder for what `train.py` runs and for what `--compile_for` compiles
for a TPU topology on any host: model, mesh over the devices, optimizer,
shardings from the abstract state (nothing is allocated), and the jitted,
donating step. Only shapes are needed, so a fine-tuning recipe builds
without its pretrained file.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding

from vit_jax import parallel
from vit_jax.models import registry
from vit_jax.train import config_keys
from vit_jax.train.mixing import make_mixer
from vit_jax.train.optim import make_optimizer, schedule
from vit_jax.train.step import init_state, make_train_step


@dataclasses.dataclass
class TrainProgram:
  model_config: ml_collections.ConfigDict
  model: nn.Module
  mesh: Mesh
  init: Callable[[Any], dict]       # pretrained params or None -> state
  abstract_state: Any               # ShapeDtypeStructs with their shardings
  state_shardings: Any
  batch_sharding: NamedSharding
  step: Callable                    # jitted (state, images, labels) -> (state, metrics)
  batch_size: int                   # global
  image_size: int

  def abstract_batch(self) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    """The step's images (uint8 NHWC) and labels, global and batch-sharded."""
    n, s = self.batch_size, self.image_size
    return (jax.ShapeDtypeStruct((n, s, s, 3), jnp.uint8, sharding=self.batch_sharding),
            jax.ShapeDtypeStruct((n,), jnp.int32, sharding=self.batch_sharding))


def model_overrides(config: ml_collections.ConfigDict) -> dict:
  """The model config fields a training config sets."""
  return {**config.model_overrides, 'image_size': config.image_size, 'dtype': config.dtype}


def model_config_of(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model config a training config asks for, without reading weights:
  a pretrained checkpoint is adapted to exactly this config."""
  return registry.get_model_config(config.model, **model_overrides(config))


def build(config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict,
          devices: Optional[Sequence[jax.Device]] = None,
          pretrained: Any = None) -> TrainProgram:
  """The program for `devices` (default: every device of every process);
  `pretrained` (arrays or their shapes) replace the random init."""
  model = registry.module_from_config(model_config)
  mesh = parallel.make_mesh(config.fsdp, devices)
  parallel.check_batch_size(config.batch_size, mesh=mesh)
  n = mesh.devices.size
  if config.accum_steps < 1 or config.batch_size % (n * config.accum_steps):
    raise ValueError(f'batch_size={config.batch_size} must be divisible by the device count '
                     f'({n}) times accum_steps ({config.accum_steps})')
  config_keys.check(config)
  tx = make_optimizer(config)
  mix = make_mixer(config_keys.mixing_of(config), model_config.num_classes,
                   config.label_smoothing, mesh)
  lr_fn = schedule(config.lr, config.warmup_steps, config.total_steps)

  # shapes first, then shardings: nothing is allocated until the caller initialises
  init = lambda p: init_state(model, tx, config.image_size, config.seed, p)  # noqa: E731
  abstract = jax.eval_shape(init, pretrained)
  shardings = parallel.param_shardings(mesh, abstract)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  batch_sh = parallel.batch_sharding(mesh)
  specs = jax.tree.map(lambda s: s.spec, shardings['params'])
  step = jax.jit(
      make_train_step(model, tx, lr_fn, model_config.mean, model_config.std,
                      config.label_smoothing, config.accum_steps, list(mesh.devices.flat),
                      fsdp=(mesh, specs) if config.fsdp > 1 else None, mix=mix,
                      loss=config_keys.loss_of(config)),
      in_shardings=(shardings, batch_sh, batch_sh),
      out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=(0,))
  return TrainProgram(model_config, model, mesh, init, abstract, shardings, batch_sh, step,
                      config.batch_size, config.image_size)
