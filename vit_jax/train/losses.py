"""The training losses, over integer labels or soft targets.

`softmax_xent`: cross-entropy of the softmax, with label smoothing.
`sigmoid_xent`: big_vision's `sigmoid_xent`, an independent sigmoid per
class summed over the classes (AugReg's ImageNet-1k recipe, with the head's
bias initialised to -6.9, about log(1 / 1000)).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

LOSSES = ('softmax_xent', 'sigmoid_xent')


def smoothed_targets(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """(1 - s) on the label plus s spread uniformly over all classes."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return onehot * (1.0 - smoothing) + smoothing / num_classes


def _targets(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """`labels` shaped as the logits are the targets themselves (Mixup's,
  already smoothed); integers are smoothed here."""
  if labels.ndim == logits.ndim:
    return labels
  return smoothed_targets(labels, logits.shape[-1], smoothing)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
  """Mean over the batch of -sum(target * log_softmax(logits))."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.mean(jnp.sum(_targets(logits, labels, smoothing) * logp, axis=-1))


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array,
                          smoothing: float = 0.0) -> jax.Array:
  """Mean over the batch of -sum(t * log sigmoid(z) + (1 - t) * log sigmoid(-z))
  over the classes, as big_vision computes it (log_sigmoid both ways: stable)."""
  z = logits.astype(jnp.float32)
  t = _targets(logits, labels, smoothing)
  return -jnp.mean(jnp.sum(t * jax.nn.log_sigmoid(z) + (1.0 - t) * jax.nn.log_sigmoid(-z),
                           axis=-1))


def loss_fn(name: str) -> Callable[[jax.Array, jax.Array, float], jax.Array]:
  """The loss named in a config's `loss` (one of LOSSES)."""
  return {'softmax_xent': cross_entropy, 'sigmoid_xent': sigmoid_cross_entropy}[name]
