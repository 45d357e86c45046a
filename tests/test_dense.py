"""vit_jax.dense.Dense: nn.DenseGeneral's parameters and values, and the
same values and gradients on the CPU kernels' 2-D path."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax import cpu_kernels
from vit_jax.dense import Dense

# (width,) -> (heads, head_dim) as the q/k/v projections, (heads, head_dim) -> (width,) as `out`
SHAPES = [((2, 5, 12), dict(features=(3, 8)), dict(features=(3, 8))),
          ((2, 5, 3, 8), dict(features=12, in_axes=2), dict(features=12, axis=(-2, -1)))]


@pytest.mark.parametrize('shape,ours,flax_kw', SHAPES)
def test_parameters_and_values_are_those_of_dense_general(shape, ours, flax_kw):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  general = nn.DenseGeneral(kernel_init=nn.initializers.xavier_uniform(), **flax_kw)
  want = general.init(jax.random.PRNGKey(1), x)
  got = Dense(**ours).init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  params = jax.tree.map(lambda a: a + 0.1, want)  # a non-zero bias
  np.testing.assert_array_equal(np.asarray(Dense(**ours).apply(params, x)),
                                np.asarray(general.apply(params, x)))


@pytest.mark.skipif(not cpu_kernels.available(), reason='no C++ compiler for the CPU kernels')
@pytest.mark.parametrize('use_bias', [True, False])
@pytest.mark.parametrize('shape,ours,_', SHAPES)
def test_the_kernels_path_has_the_same_values_and_gradients(shape, ours, _, use_bias):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  plain, fast = (Dense(**ours, use_bias=use_bias, cpu_kernels=c) for c in (False, True))
  params = jax.tree.map(lambda a: a + 0.1, plain.init(jax.random.PRNGKey(1), x))
  assert ('bias' in params['params']) == use_bias

  def loss(m):
    return lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
  step = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))
  assert 'vit_transpose_cpu' in step.lower(params, x).as_text()
  np.testing.assert_allclose(np.asarray(fast.apply(params, x)), np.asarray(plain.apply(params, x)),
                             atol=1e-6, rtol=1e-6)
  for got, want in zip(jax.tree.leaves(step(params, x)),
                       jax.tree.leaves(jax.grad(loss(plain), argnums=(0, 1))(params, x))):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)
