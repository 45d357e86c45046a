"""The jitted step: accumulation is the same maths; a non-finite step is inert."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import vit_jax
from vit_jax.train.optim import make_optimizer, schedule
from vit_jax.train.step import init_state, make_train_step


def _setup(accum, lr=0.1):
  model = vit_jax.create_model('vit_tiny_patch16_224', image_size=16, patch_size=8,
                               hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
                               num_classes=3)
  cfg = ml_collections.ConfigDict(dict(lr=lr, warmup_steps=0, total_steps=10,
                                       optimizer='sgd', momentum=0.9, weight_decay=1e-4,
                                       grad_clip_norm=1.0))
  tx = make_optimizer(cfg)
  step = jax.jit(make_train_step(model, tx, schedule(lr, 0, 10), (0.5,) * 3, (0.5,) * 3,
                                 label_smoothing=0.1, accum_steps=accum))
  state = jax.jit(lambda: init_state(model, tx, 16, seed=0))()  # eager init compiles each op
  state['params']['head']['kernel'] = jax.random.normal(jax.random.PRNGKey(1), (16, 3))
  return step, state


def test_two_accumulated_micro_batches_equal_one_batch():
  rs = np.random.RandomState(0)
  images = rs.randint(0, 256, (8, 16, 16, 3)).astype(np.uint8)
  labels = rs.randint(0, 3, 8).astype(np.int32)
  (s1, st1), (s2, st2) = _setup(1), _setup(2)
  for _ in range(3):
    st1, m1 = s1(st1, images, labels)
    st2, m2 = s2(st2, images, labels)
    assert float(m1['loss']) == pytest.approx(float(m2['loss']), rel=1e-5)
    assert float(m1['grad_norm']) == pytest.approx(float(m2['grad_norm']), rel=1e-4)
  for a, b in zip(jax.tree.leaves(st1['params']), jax.tree.leaves(st2['params'])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert int(st1['step']) == 3 and int(st1['bad_step']) == -1


def test_a_non_finite_step_changes_nothing_and_is_recorded():
  step, state = _setup(1)
  images = np.zeros((4, 16, 16, 3), np.uint8)
  labels = np.zeros(4, np.int32)
  state, _ = step(state, images, labels)
  before = jax.tree.map(np.array, state['params'])
  state['params']['head']['bias'] = state['params']['head']['bias'].at[0].set(jnp.nan)
  poisoned = jax.tree.map(np.array, state['params'])
  state, m = step(state, images, labels)
  assert not np.isfinite(float(m['loss'])) and int(state['bad_step']) == 1
  for a, b in zip(jax.tree.leaves(poisoned), jax.tree.leaves(state['params'])):
    np.testing.assert_array_equal(a, b)  # the update was not applied
  assert before['head']['kernel'].shape == (16, 3)


def test_the_step_makes_no_host_transfers():
  """Once state and batch are on the device, the jitted step moves nothing
  between host and device: no hidden syncs in the loop."""
  step, state = _setup(1)
  state = jax.device_put(state)
  images = jax.device_put(np.zeros((4, 16, 16, 3), np.uint8))
  labels = jax.device_put(np.zeros(4, np.int32))
  state, _ = step(state, images, labels)  # compile outside the guard
  with jax.transfer_guard('disallow'):
    for _ in range(2):
      state, metrics = step(state, images, labels)
  assert int(state['step']) == 3 and np.isfinite(float(metrics['loss']))
