"""Cross-entropy with label smoothing, over integer labels or soft targets."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def smoothed_targets(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
  """(1 - s) on the label plus s spread uniformly over all classes."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  return onehot * (1.0 - smoothing) + smoothing / num_classes


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
  """Mean over the batch of -sum(target * log_softmax(logits)); `labels` are
  integers (smoothed here) or, shaped as the logits, the targets themselves
  (Mixup's, already smoothed)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  if labels.ndim == logits.ndim:
    targets = labels
  else:
    targets = smoothed_targets(labels, logits.shape[-1], smoothing)
  return -jnp.mean(jnp.sum(targets * logp, axis=-1))
