"""Optimizer and learning-rate schedule from a training config.

SGD with momentum (the card's recipe) or AdamW; linear warmup then cosine
decay to zero; clipping by global norm; decoupled weight decay on kernels
only. Decay convention (as optax.adamw): each step subtracts
`lr(t) * weight_decay * w`, i.e. the decay follows the learning-rate
schedule, peak included.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax


def schedule(lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 to `lr`, then cosine decay to 0 at `total_steps`."""
  def fn(step):
    step = jnp.asarray(step, jnp.float32)
    warm = lr * step / max(warmup_steps, 1)
    progress = jnp.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    cos = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup_steps, warm, cos)
  return fn


def decay_mask(params: Any) -> Any:
  """True for kernels (Dense, Conv, attention); not biases, norms,
  position embeddings or the class token."""
  def is_kernel(path, _):
    return getattr(path[-1], 'key', None) == 'kernel'
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  lr = schedule(config.lr, config.warmup_steps, config.total_steps)
  parts = []
  if config.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'sgd':
    parts.append(optax.trace(decay=config.momentum, nesterov=False)
                 if config.momentum else optax.identity())
  elif config.optimizer == 'adamw':
    parts.append(optax.scale_by_adam(b1=config.get('b1', 0.9), b2=config.get('b2', 0.999)))
  else:
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")
  if config.weight_decay:
    parts.append(optax.add_decayed_weights(config.weight_decay, mask=decay_mask))
  parts.append(optax.scale_by_learning_rate(lr))
  return optax.chain(*parts)
