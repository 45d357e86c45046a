"""The training losses against their formulas on a hand-made batch."""
import jax
import numpy as np
import pytest

from vit_jax.train import losses

LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
LABELS = np.array([0, 2], np.int32)


def _log_sigmoid(z):
  return -np.log1p(np.exp(-z))


def test_sigmoid_cross_entropy_is_big_vision_s():
  """-sum over classes of t log s(z) + (1 - t) log s(-z), the batch's mean."""
  t = np.eye(3, dtype=np.float32)[LABELS]
  want = -np.mean(np.sum(t * _log_sigmoid(LOGITS) + (1 - t) * _log_sigmoid(-LOGITS), axis=1))
  sigmoid = jax.jit(losses.sigmoid_cross_entropy)
  assert float(sigmoid(LOGITS, LABELS)) == pytest.approx(want, rel=1e-6)
  assert float(sigmoid(LOGITS, t)) == pytest.approx(want, rel=1e-6)  # soft targets as given
  # zero logits (a zero-initialised head): log 2 per class, whatever the targets
  assert float(sigmoid(np.zeros((2, 3), np.float32), LABELS)) == pytest.approx(3 * np.log(2))


def test_softmax_cross_entropy_with_label_smoothing():
  t = np.eye(3)[LABELS] * 0.9 + 0.1 / 3
  logp = LOGITS - np.log(np.exp(LOGITS).sum(axis=1, keepdims=True))
  want = -np.mean(np.sum(t * logp, axis=1))
  assert float(jax.jit(losses.cross_entropy, static_argnums=2)(LOGITS, LABELS, 0.1)) == (
      pytest.approx(want, rel=1e-6))
  assert losses.loss_fn('softmax_xent') is losses.cross_entropy
  assert losses.loss_fn('sigmoid_xent') is losses.sigmoid_cross_entropy
