"""The CPU kernels: attention with XLA's attention's values and gradients,
the transpose behind the dense layer's weight gradient, LayerNorm against
Flax and float64, the bias and GELU against XLA, and the build cache."""

import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import textbook_attention
from vit_jax.backends.cpu import kernels as cpu_kernels
from vit_jax.models import attention, vit

pytestmark = pytest.mark.skipif(not cpu_kernels.available(),
                                reason='no C++ compiler for the CPU kernels')


def _operands(b, tq, t, h, d, seed=0):
  ks = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = 2 * jax.random.normal(ks[0], (b, tq, h, d))  # peaked weights, not near-uniform ones
  k, v = (jax.random.normal(key, (b, t, h, d)) for key in ks[1:3])
  return q, k, v, jax.random.normal(ks[3], (b, tq, h, d))


def _relative_error(got, ref) -> float:
  """The largest difference over the largest reference value, on the host
  (on the device, each shape would compile programs of its own)."""
  got, ref = np.asarray(got), np.asarray(ref)
  return float(np.abs(got - ref).max() / np.abs(ref).max())


# tokens not a multiple of 16 (padding), one query (the class-token block),
# head_dim 16/48/96 (one, three and six vectors), the card S/16's shape
@pytest.mark.parametrize('b,tq,t,h,d', [(2, 13, 13, 3, 16), (3, 1, 50, 2, 64), (1, 17, 17, 1, 48),
                                         (2, 197, 197, 8, 96), (2, 32, 32, 2, 16)])
def test_values_and_gradients_match_xla_attention(b, tq, t, h, d):
  q, k, v, dy = _operands(b, tq, t, h, d)
  scale = d ** -0.5 * 1.3
  y, vjp = jax.vjp(jax.jit(lambda *a: cpu_kernels.attend(*a, scale)), q, k, v)
  np.testing.assert_allclose(np.asarray(y), textbook_attention(q, k, v, scale),
                             atol=3e-6, rtol=1e-5)
  # undifferentiated, the kernel keeps no weights and computes the same y
  inference = jax.jit(lambda *a: cpu_kernels.attend(*a, scale))
  assert 'vit_attention_cpu_inference' in inference.lower(q, k, v).as_text()
  np.testing.assert_array_equal(np.asarray(inference(q, k, v)), np.asarray(y))
  _, xla_vjp = jax.vjp(jax.jit(lambda *a: attention.attend(*a, scale)), q, k, v)
  for name, got, ref in zip('qkv', vjp(dy), xla_vjp(dy)):
    err = _relative_error(got, ref)
    assert err < 5e-6, f'd{name}: relative error {err}'


def test_vmap_runs_the_kernel_per_element():
  q, k, v, _ = _operands(2, 5, 5, 2, 16)
  stacked = [jnp.stack([a, 2 * a]) for a in (q, k, v)]
  out = jax.vmap(lambda *a: cpu_kernels.attend(*a, 0.25))(*stacked)
  np.testing.assert_allclose(np.asarray(out[1]), textbook_attention(2 * q, 2 * k, 2 * v, 0.25),
                             atol=1e-5, rtol=1e-5)


def test_the_library_is_built_once_per_source(tmp_path, monkeypatch):
  cache, sources = tmp_path / 'cache', tmp_path / 'kernels'
  monkeypatch.setenv('VIT_JAX_CACHE', str(cache))
  sources.mkdir()
  for name in ('transpose.cc', 'vec.h'):  # the smallest kernel: the build is what is tested
    shutil.copy(cpu_kernels.KERNELS / name, sources)
  first = cpu_kernels._compile(sources, jax.ffi.include_dir())
  assert first.parent == cache and first.stat().st_size > 0
  stamp = first.stat().st_mtime_ns
  assert cpu_kernels._compile(sources, jax.ffi.include_dir()) == first
  assert first.stat().st_mtime_ns == stamp
  header = sources / 'vec.h'  # a header's change is a new library too
  header.write_text(header.read_text() + '\n// changed\n')
  assert cpu_kernels._compile(sources, jax.ffi.include_dir()) != first
  assert sorted(p.suffix for p in cache.iterdir()) == ['.so', '.so']  # no leftovers


def test_no_compiler_is_one_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv('VIT_JAX_CACHE', str(tmp_path))
  monkeypatch.setenv('CXX', 'no-such-compiler')
  with pytest.raises(RuntimeError, match="no C.. compiler 'no-such-compiler'"):
    cpu_kernels._compile(cpu_kernels.KERNELS, jax.ffi.include_dir())
  monkeypatch.setenv('CXX', 'c++')
  with pytest.raises(RuntimeError, match='failed on'):
    cpu_kernels._compile(cpu_kernels.KERNELS, str(tmp_path))  # no FFI headers there
  assert not any(tmp_path.glob('*.so'))


def test_transpose_and_the_dense_layer_gradients():
  x = jax.random.normal(jax.random.PRNGKey(0), (37, 53))  # not whole tiles
  np.testing.assert_array_equal(np.asarray(cpu_kernels.transpose(x)), np.asarray(x).T)
  ks = jax.random.split(jax.random.PRNGKey(1), 3)
  x, w, b = (jax.random.normal(k, s) for k, s in zip(ks, [(2, 5, 16), (16, 24), (24,)]))

  def loss(f):
    return lambda *a: jnp.sum(jnp.sin(f(*a)))
  plain = jax.grad(loss(lambda x, w, b: x @ w + b), argnums=(0, 1, 2))(x, w, b)
  fast = jax.jit(jax.grad(loss(cpu_kernels.linear), argnums=(0, 1, 2)))
  assert 'vit_transpose_cpu' in fast.lower(x, w, b).as_text()
  for got, want in zip(fast(x, w, b), plain):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


def _layer_norm64(x, scale, bias, eps):
  x, scale, bias = (np.asarray(a, np.float64) for a in (x, scale, bias))
  return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * scale + bias


@pytest.mark.parametrize('shape,eps', [((3, 37, 48), 1e-6), ((70, 16), 1e-5)])
def test_layer_norm_matches_flax(shape, eps):
  """Values and gradients; rows not a whole number of the kernel's tasks."""
  ks = jax.random.split(jax.random.PRNGKey(0), 4)
  x = 2 * jax.random.normal(ks[0], shape)
  scale, bias = (1 + jax.random.normal(k, shape[-1:]) for k in ks[1:3])
  dy = jax.random.normal(ks[3], shape)
  ours, ours_vjp = jax.vjp(jax.jit(lambda *a: cpu_kernels.layer_norm(*a, eps)), x, scale, bias)
  theirs, theirs_vjp = jax.vjp(jax.jit(
      lambda x, s, b: nn.LayerNorm(epsilon=eps).apply({'params': {'scale': s, 'bias': b}}, x)),
      x, scale, bias)
  ours_vjp, theirs_vjp = jax.jit(ours_vjp), jax.jit(theirs_vjp)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=5e-6)
  np.testing.assert_allclose(np.asarray(ours), _layer_norm64(x, scale, bias, eps), atol=5e-6)
  for name, got, ref in zip(['x', 'scale', 'bias'], ours_vjp(dy), theirs_vjp(dy)):
    err = _relative_error(got, ref)
    assert err < 1e-5, f'd{name}: relative error {err}'


def test_layer_norm_keeps_its_digits_far_from_zero():
  """Two passes over each row: Flax's E[x^2] - E[x]^2 loses the variance of
  rows with a large mean (measured: 1.5e-2 off at a mean of 300, ours 1.1e-4)."""
  x = 300 + 2 * jax.random.normal(jax.random.PRNGKey(0), (2, 5, 768))
  scale, bias = jnp.full((768,), 1.5), jnp.full((768,), 0.25)
  want = _layer_norm64(x, scale, bias, 1e-6)
  ours = np.abs(np.asarray(cpu_kernels.layer_norm(x, scale, bias, 1e-6)) - want).max()
  flax = np.abs(np.asarray(nn.LayerNorm().apply({'params': {'scale': scale, 'bias': bias}}, x))
                - want).max()
  assert ours < 3e-4 and flax > 20 * ours, (ours, flax)


@pytest.mark.parametrize('approximate', [False, True])
def test_bias_gelu_matches_xla(approximate):
  """Both GELUs, values and gradients (the bias's summed over rows), on
  inputs up to the tails where erf and tanh saturate."""
  ks = jax.random.split(jax.random.PRNGKey(0), 3)
  z = 4 * jax.random.normal(ks[0], (3, 37, 48))
  bias, dh = jax.random.normal(ks[1], (48,)), jax.random.normal(ks[2], z.shape)
  ours, ours_vjp = jax.vjp(jax.jit(lambda z, b: cpu_kernels.bias_gelu(z, b, approximate)), z, bias)
  theirs, theirs_vjp = jax.vjp(lambda z, b: vit.gelu(z + b, approximate), z, bias)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=3e-6, rtol=1e-6)
  for name, got, ref in zip(['z', 'bias'], ours_vjp(dh), theirs_vjp(dh)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5, rtol=1e-5,
                               err_msg=f'd{name}')
