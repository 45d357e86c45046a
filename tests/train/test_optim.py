"""Schedule, clipping, weight-decay mask and label smoothing, by the numbers."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import vit_jax
from vit_jax.train.losses import cross_entropy
from vit_jax.train.optim import clip_by_global_norm, decay_mask, make_optimizer, schedule
from conftest import jit_init


def _config(**kw):
  c = dict(lr=0.1, warmup_steps=10, total_steps=110, optimizer='sgd', momentum=0.9,
           weight_decay=0.0, grad_clip_norm=0.0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def test_warmup_then_cosine():
  fn = schedule(0.1, 10, 110)
  for step in (0, 1, 5, 9):
    assert float(fn(step)) == pytest.approx(0.1 * step / 10)
  for step in (10, 35, 60, 85, 109, 110, 200):
    p = min((step - 10) / 100, 1.0)
    assert float(fn(step)) == pytest.approx(0.5 * 0.1 * (1 + math.cos(math.pi * p)), abs=1e-8)


def test_clipping_by_global_norm_then_momentum():
  tx = make_optimizer(_config(grad_clip_norm=1.0, warmup_steps=0, total_steps=10 ** 9))
  params = {'kernel': jnp.zeros(3)}
  g = {'kernel': jnp.array([3.0, 4.0, 0.0])}  # norm 5 -> scaled to norm 1
  state = tx.init(params)
  u1, state = tx.update(g, state, params)
  np.testing.assert_allclose(u1['kernel'], -0.1 * np.array([0.6, 0.8, 0.0]), rtol=1e-6)
  u2, state = tx.update(g, state, params)  # momentum: m = 0.9 m + g
  np.testing.assert_allclose(u2['kernel'], -0.1 * 1.9 * np.array([0.6, 0.8, 0.0]), rtol=1e-6)
  small = {'kernel': jnp.array([0.3, 0.4, 0.0])}  # under the threshold: untouched
  u3, _ = make_optimizer(_config(grad_clip_norm=1.0, momentum=0.0, warmup_steps=0)).update(
      small, tx.init(params), params)
  np.testing.assert_allclose(u3['kernel'], -0.1 * np.array([0.3, 0.4, 0.0]), rtol=1e-6)


def test_clipping_takes_the_norm_the_step_computed():
  g = {'kernel': jnp.array([3.0, 4.0, 0.0]), 'bias': jnp.array([12.0])}  # norm 13
  want, _ = optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())
  got, _ = clip_by_global_norm(1.0).update(g, optax.EmptyState())
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  told, _ = clip_by_global_norm(1.0).update(g, optax.EmptyState(), grad_norm=jnp.float32(26.0))
  np.testing.assert_allclose(told['bias'], [12.0 / 26.0], rtol=1e-6)  # the norm it was given
  # make_optimizer's chain passes the norm on; other transformations ignore it
  tx = make_optimizer(_config(grad_clip_norm=1.0, momentum=0.9, warmup_steps=0))
  u, _ = tx.update(g, tx.init(g), g, grad_norm=jnp.float32(26.0))
  np.testing.assert_allclose(u['bias'], [-0.1 * 12.0 / 26.0], rtol=1e-6)


@pytest.fixture(scope='module')
def tiny_vit():
  model = vit_jax.create_model('vit_base_patch16_224', image_size=32, patch_size=16,
                               hidden_size=8, num_layers=1, num_heads=2, mlp_dim=16,
                               num_classes=3, resnet=None)
  return model, jit_init(model, jnp.zeros((1, 32, 32, 3)))['params']


def test_weight_decay_hits_kernels_only_and_follows_the_schedule(tiny_vit):
  _, params = tiny_vit
  mask = jax.tree_util.tree_flatten_with_path(decay_mask(params))[0]
  decayed = {'/'.join(p.key for p in path) for path, m in mask if m}
  assert 'head/kernel' in decayed and 'embedding/kernel' in decayed
  assert 'Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel' in decayed
  for name in ('cls', 'Transformer/posembed_input/pos_embedding', 'head/bias',
               'Transformer/encoder_norm/scale', 'Transformer/encoderblock_0/LayerNorm_0/bias'):
    assert name not in decayed
  params = jax.tree.map(np.ones_like, params)
  tx = make_optimizer(_config(weight_decay=0.5, momentum=0.0, warmup_steps=4, total_steps=100))
  state = jax.jit(tx.init)(params)
  zeros = jax.tree.map(np.zeros_like, params)
  for step in range(3):
    updates, state = jax.jit(tx.update)(zeros, state, params)
  lr = 0.1 * 2 / 4  # the third step (count 2) of the warmup
  np.testing.assert_allclose(updates['head']['kernel'], -lr * 0.5, rtol=1e-6)
  np.testing.assert_array_equal(updates['head']['bias'], 0.0)
  np.testing.assert_array_equal(updates['cls'], 0.0)


def test_label_smoothing_against_a_direct_computation():
  logits = np.array([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0]], np.float32)
  labels = np.array([0, 2])
  for s in (0.0, 0.1, 0.3):
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.full((2, 4), s / 4)
    target[np.arange(2), labels] += 1 - s
    ref = -(target * logp).sum(1).mean()
    assert float(cross_entropy(jnp.asarray(logits), jnp.asarray(labels), s)) == pytest.approx(
        ref, rel=1e-6)


def test_adamw_and_unknown_optimizer():
  tx = make_optimizer(_config(optimizer='adamw', warmup_steps=0))
  p = {'kernel': jnp.ones(2)}
  u, _ = tx.update({'kernel': jnp.array([1.0, -2.0])}, tx.init(p), p)
  np.testing.assert_allclose(u['kernel'], [-0.1, 0.1], rtol=1e-4)  # Adam's first step: sign
  with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw'"):
    make_optimizer(_config(optimizer='lamb'))


def test_big_visions_weight_decay_at_lr_1e3_is_adamws_0_1_on_a_real_update(tiny_vit):
  """wd 1e-4 big_vision-style (times the schedule) == AdamW's 0.1 (times lr),
  step by step through warmup, with clipping and a bfloat16 first moment."""
  model, params = tiny_vit
  rs = np.random.RandomState(0)
  params = dict(params, head=dict(params['head'], kernel=rs.normal(size=(8, 3)).astype(
      np.float32)))  # a random head: gradients everywhere
  images, labels = rs.normal(size=(4, 32, 32, 3)).astype(np.float32), np.array([0, 1, 2, 1])
  grads = jax.jit(jax.grad(lambda p: cross_entropy(model.apply({'params': p}, images),
                                                   labels)))(params)
  # the head and the patch embedding, kernels (decayed) and biases (not)
  params, grads = [{k: t[k] for k in ('head', 'embedding')} for t in (params, grads)]
  common = dict(optimizer='adamw', lr=1e-3, warmup_steps=2, total_steps=10, grad_clip_norm=1.0,
                adam_mu_dtype='bfloat16')
  txs = [make_optimizer(_config(weight_decay_style='adamw', weight_decay=0.1, **common)),
         make_optimizer(_config(weight_decay_style='big_vision', weight_decay=1e-4, **common))]

  @jax.jit
  def step(p, states):  # both from the same parameters and gradients, each its own state
    (a, sa), (b, sb) = [tx.update(grads, s, p) for tx, s in zip(txs, states)]
    return optax.apply_updates(p, a), (sa, sb), a, b
  p, states = params, jax.jit(lambda p: tuple(tx.init(p) for tx in txs))(params)
  assert {leaf.dtype for leaf in jax.tree.leaves(states[1][1].mu)} == {jnp.dtype('bfloat16')}
  for _ in range(5):
    p, states, a, b = step(p, states)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-10)
  decayed = float(jnp.abs(a['head']['kernel']).max())
  assert 1e-5 < decayed < 1e-2  # a real update, past the warmup


def test_big_vision_style_decay_follows_the_schedule_not_the_learning_rate():
  params = {'kernel': jnp.full(3, 2.0), 'bias': jnp.full(3, 2.0)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  for lr in (1e-3, 1.0):
    tx = make_optimizer(_config(optimizer='adamw', lr=lr, warmup_steps=4, total_steps=100,
                                weight_decay=0.5, weight_decay_style='big_vision'))
    state = jax.jit(tx.init)(params)
    for _ in range(3):
      updates, state = jax.jit(tx.update)(zeros, state, params)
    # the third step (count 2): the schedule's shape is 2 / 4, the decay 0.5 * 2 / 4 * w
    np.testing.assert_allclose(updates['kernel'], -0.5 * 2 / 4 * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(updates['bias'], 0.0)
  with pytest.raises(ValueError, match="^weight_decay_style must be 'adamw'"):
    make_optimizer(_config(weight_decay_style='torch'))
  with pytest.raises(ValueError, match="^adam_mu_dtype must be 'float32' or 'bfloat16'"):
    make_optimizer(_config(optimizer='adamw', adam_mu_dtype='float16'))
