"""The seam: implementations follow the platform of the devices a
computation is built for, never the process's default backend."""
import os
import subprocess
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vit_jax
from vit_jax import backends
from vit_jax.models import attention
from conftest import jit_apply, jit_init

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64,
            num_classes=10)


def _devices(platform: str, n: int = 1):
  return [SimpleNamespace(platform=platform, id=i) for i in range(n)]


def _lowered(model, devices) -> str:
  x = jnp.ones((2, 32, 32, 3))
  params = jit_init(model, x)['params']

  def apply(p):
    with backends.for_devices(devices):
      return model.apply({'params': p}, x)
  return jax.jit(apply).lower(params).as_text()


def test_platform_of_needs_one_platform():
  assert backends.platform_of(_devices('tpu', 8)) == 'tpu'
  with pytest.raises(ValueError, match="one platform expected, got \\['cpu', 'gpu'\\]"):
    backends.platform_of(_devices('cpu') + _devices('gpu'))


@pytest.mark.parametrize('devices', [_devices('tpu', 8), _devices('cpu', 2), _devices('tpu')])
def test_tpus_and_several_cpu_devices_run_the_model_as_written(devices):
  """A step built for TPU devices on this CPU host has no CPU kernel in it."""
  text = _lowered(vit_jax.create_model('vit_base_patch16_224', **TINY), devices)
  assert 'custom_call' not in text


def test_gpus_in_half_precision_take_cudnn_attention(monkeypatch):
  calls = []

  def cudnn(q, k, v, scale, implementation):
    calls.append((q.dtype, implementation))
    return attention.attend(q, k, v, scale)
  monkeypatch.setattr(jax.nn, 'dot_product_attention', cudnn)
  for dtype in ('bfloat16', 'float16', 'float32'):
    _lowered(vit_jax.create_model('vit_base_patch16_224', **TINY, dtype=dtype), _devices('gpu'))
  assert calls == [(jnp.bfloat16, 'cudnn'), (jnp.float16, 'cudnn')]


def test_a_shape_cudnn_refuses_keeps_the_models_attention(monkeypatch):
  def refuse(*args, **kwargs):
    raise ValueError('cuDNN does not take this')
  monkeypatch.setattr(jax.nn, 'dot_product_attention', refuse)
  model = vit_jax.create_model('vit_base_patch16_224', **TINY, dtype='bfloat16')
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = jit_init(model, x)['params']
  with backends.for_devices(_devices('gpu')):
    got = jit_apply(model, {'params': params}, x)
  want = jit_apply(model, {'params': params}, x)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_cpu_only_machine_does_not_start_libtpu():
  """Where there is neither TPU nor GPU, JAX uses the CPU (told so by
  `import vit_jax`) after configure_process too, so an installed libtpu is
  not started and prints nothing."""
  code = ('import jax\nfrom vit_jax import backends\nbackends.configure_process()\n'
          'print(jax.config.jax_platforms, jax.default_backend())\n')
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ['cpu', 'cpu']
  assert 'TPU' not in out.stderr


def test_big_visions_options_run_through_the_cpu_seam():
  """Attention pooling, sin-cos embeddings and drop path (in training: the
  same masks on both paths): the seam intercepts by type, so the kernels
  serve this model too and give the model's logits."""
  from vit_jax.backends.cpu import kernels
  if not kernels.available():
    pytest.skip('no C++ compiler for the CPU kernels')
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  model = vit_jax.create_model('vit_base_patch16_224', **TINY, classifier='map',
                               posemb='sincos2d', representation_size=True, drop_path_rate=0.3)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params']
  rng = np.random.RandomState(0)
  params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes)

  def apply(p, on):
    with backends.for_devices(jax.devices('cpu')[:1], kernels=on):
      return model.apply({'params': p}, x, train=True, rngs={'dropout': jax.random.PRNGKey(2)})
  assert 'custom_call' in jax.jit(apply, static_argnums=1).lower(params, True).as_text()
  got, want = (np.asarray(jax.jit(apply, static_argnums=1)(params, on)) for on in (True, False))
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
