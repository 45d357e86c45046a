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


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformationExtraArgs:
  """optax.clip_by_global_norm, taking the norm as the `grad_norm` extra
  argument where the caller has it: the training step computes it for its
  metrics, and XLA cannot share that computation with one inside the
  update's `cond` (a pass over every gradient, 5 ms of a CPU step of the
  card's S/16)."""
  def update(updates, state, params=None, *, grad_norm=None, **extra_args):
    del params, extra_args
    norm = optax.tree.norm(updates) if grad_norm is None else grad_norm
    keep = norm < max_norm
    updates = jax.tree.map(
        lambda t: jax.lax.select(keep, t, t / norm.astype(t.dtype) * max_norm), updates)
    return updates, state
  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
  lr = schedule(config.lr, config.warmup_steps, config.total_steps)
  parts = []
  if config.grad_clip_norm:
    parts.append(clip_by_global_norm(config.grad_clip_norm))
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
