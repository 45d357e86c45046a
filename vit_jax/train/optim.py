"""Optimizer and learning-rate schedule from a training config.

SGD with momentum (the card's recipe) or Adam with decoupled weight decay
(`adam_b1`, `adam_b2`, `adam_eps`, and `adam_mu_dtype` for the first
moment, bfloat16 in big_vision); linear warmup then cosine decay to zero;
clipping by global norm; weight decay on kernels only, in one of two units
(`weight_decay_style`):

- 'adamw' (optax.adamw, PyTorch's AdamW): each step subtracts
  `lr(t) * weight_decay * w`, the decay scaled by the learning rate.
- 'big_vision' (its `config.wd`): each step subtracts
  `lr(t) / lr * weight_decay * w`, the decay following the schedule's shape
  (1 at its peak) but not the learning rate's value.

So big_vision's wd 1e-4 at lr 1e-3 is AdamW's weight_decay 0.1 at lr 1e-3.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from vit_jax.train.config_keys import check_optimizer


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
  check_optimizer(config)
  parts = []
  if config.grad_clip_norm:
    parts.append(clip_by_global_norm(config.grad_clip_norm))
  if config.optimizer == 'sgd':
    parts.append(optax.trace(decay=config.momentum, nesterov=False)
                 if config.momentum else optax.identity())
  else:
    parts.append(optax.scale_by_adam(
        b1=config.get('adam_b1', 0.9), b2=config.get('adam_b2', 0.999),
        eps=config.get('adam_eps', 1e-8), mu_dtype=jnp.dtype(config.get('adam_mu_dtype',
                                                                         'float32'))))
  decay = ([optax.add_decayed_weights(config.weight_decay, mask=decay_mask)]
           if config.weight_decay else [])
  if config.get('weight_decay_style', 'adamw') == 'adamw':
    parts += decay + [optax.scale_by_learning_rate(
        schedule(config.lr, config.warmup_steps, config.total_steps))]
  else:  # big_vision's chain: lr, then the decay, then the schedule's shape
    parts += [optax.scale(config.lr)] + decay + [optax.scale_by_schedule(
        schedule(1.0, config.warmup_steps, config.total_steps)), optax.scale(-1.0)]
  return optax.chain(*parts)
