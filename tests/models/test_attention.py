"""The fast attention: same maths as the textbook softmax, release parameters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import jit_apply, jit_init, textbook_attention
from vit_jax.models import attention


def _qkv(b=2, t=7, h=3, d=8, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 3)
  return [jax.random.normal(k, (b, t, h, d)) for k in ks]


@pytest.mark.parametrize('scale', [8 ** -0.5, 0.3])
def test_attend_matches_the_textbook_softmax(scale):
  q, k, v = _qkv()
  out = jax.jit(attention.attend, static_argnums=3)(q, k, v, scale)
  want = textbook_attention(q, k, v, scale)
  np.testing.assert_allclose(np.asarray(out), want, atol=2e-6)
  # queries from the first token only: the first row of the full result
  first = attention.attend(q[:, :1], k, v, scale)
  np.testing.assert_allclose(np.asarray(first), want[:, :1], atol=2e-6)


def test_attend_gradients_match_the_textbook_softmax():
  q, k, v = _qkv(seed=1)
  cot = jax.random.normal(jax.random.PRNGKey(9), q.shape)

  def textbook(q, k, v):
    w = jax.nn.softmax(jnp.einsum('bqhd,bkhd->bhqk', q, k) * 0.25, axis=-1)
    return jnp.sum(jnp.einsum('bhqk,bkhd->bqhd', w, v) * cot)

  fast = lambda q, k, v: jnp.sum(attention.attend(q, k, v, 0.25) * cot)  # noqa: E731
  grads = [jax.jit(jax.grad(f, (0, 1, 2)))(q, k, v) for f in (fast, textbook)]
  for a, b in zip(*grads):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_bfloat16_attend_keeps_float32_statistics():
  q, k, v = _qkv(t=33)
  # large logits: a bfloat16 softmax would lose most of its mantissa here
  q = q * 4
  out = attention.attend(*(a.astype(jnp.bfloat16) for a in (q, k, v)), 8 ** -0.5)
  assert out.dtype == jnp.bfloat16
  ref = textbook_attention(*(np.asarray(a.astype(jnp.bfloat16), np.float32) for a in (q, k, v)),
                           8 ** -0.5)
  err = np.abs(np.asarray(out, np.float32) - ref).max()
  assert err < 0.02 * np.abs(ref).max()


def test_parameters_have_the_release_names_shapes_and_init_scale():
  mha = attention.MultiHeadDotProductAttention(num_heads=4)
  x = jnp.ones((1, 5, 32))
  p = jit_init(mha, x)['params']
  shapes = jax.tree.map(jnp.shape, p)
  assert shapes == {'query': {'kernel': (32, 4, 8), 'bias': (4, 8)},
                    'key': {'kernel': (32, 4, 8), 'bias': (4, 8)},
                    'value': {'kernel': (32, 4, 8), 'bias': (4, 8)},
                    'out': {'kernel': (4, 8, 32), 'bias': (32,)}}
  # xavier-uniform over the flattened (32, 32) kernel, as nn.DenseGeneral: bound sqrt(6 / 64)
  bound = float(np.sqrt(6 / 64))
  for name in ('query', 'key', 'value', 'out'):
    kernel = np.asarray(p[name]['kernel'])
    assert bound * 0.8 < np.abs(kernel).max() <= bound
  assert not np.any(np.asarray(p['query']['bias']))


def test_query_tokens_give_the_first_rows_of_the_full_output():
  mha = attention.MultiHeadDotProductAttention(num_heads=4)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 32))
  p = jit_init(mha, x)['params']
  p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(3), a.shape), p)
  full = jit_apply(mha, {'params': p}, x)
  first = jit_apply(mha, {'params': p}, x, deterministic=True, query_tokens=1)
  assert first.shape == (2, 1, 32)
  np.testing.assert_allclose(np.asarray(first), np.asarray(full[:, :1]), atol=1e-6)
