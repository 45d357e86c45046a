"""The hybrid stem: weight standardisation and TF-style SAME padding."""
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import resnet
from conftest import jit_apply, jit_init


def test_weight_standardisation_per_output_channel_biased_std():
  w = np.random.RandomState(0).randn(3, 3, 4, 5).astype(np.float32)
  flat = w.reshape(-1, 5).astype(np.float64)
  ref = (flat - flat.mean(0)) / (flat.std(0) + 1e-5)  # numpy std is the biased one
  np.testing.assert_allclose(np.asarray(resnet.weight_standardize(w)).reshape(-1, 5), ref,
                             rtol=1e-5, atol=1e-5)


def test_root_conv_pads_the_extra_pixel_right_and_bottom():
  conv = resnet.StdConv(4, (7, 7), strides=(2, 2), use_bias=False)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 3))
  p = jit_init(conv, x, seed=1)
  y = jit_apply(conv, p, x)
  w = resnet.weight_standardize(p['params']['kernel'])
  # 16 -> 8 with a 7x7/2 kernel needs 5 pixels of padding: 2 before, 3 after
  ref = jax.lax.conv_general_dilated(x, w, (2, 2), ((2, 3), (2, 3)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(y, ref, atol=1e-5)
  shifted = jax.lax.conv_general_dilated(x, w, (2, 2), ((3, 2), (3, 2)),
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert np.abs(np.asarray(y) - np.asarray(shifted)).max() > 1e-2


def test_stem_output_and_parameter_names():
  x = jnp.zeros((1, 64, 64, 3))

  class Stem(resnet.nn.Module):
    @resnet.nn.compact
    def __call__(self, x):
      return resnet.stem(x, stages=(2, 1, 1), group_norm_eps=1e-5, dtype=jnp.float32)

  params = jax.jit(Stem().init)(jax.random.PRNGKey(0), x)['params']
  assert {'conv_root', 'gn_root', 'block1', 'block2', 'block3'} == set(params)
  assert set(params['block1']) == {'unit1', 'unit2'}
  assert set(params['block2']['unit1']) == {'conv1', 'gn1', 'conv2', 'gn2', 'conv3', 'gn3',
                                            'conv_proj', 'gn_proj'}
  assert 'conv_proj' not in params['block1']['unit2']
  y = jax.jit(Stem().apply)({'params': params}, x)
  assert y.shape == (1, 4, 4, 1024)  # /4 by the root, /2 by each later stage


def test_max_pool_pads_with_minus_infinity():
  x = -1.0 - jnp.arange(16.0).reshape(1, 4, 4, 1)
  y = resnet.nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
  assert float(y.max()) < 0  # zero padding would give 0
