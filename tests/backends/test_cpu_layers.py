"""The model on the CPU kernels' path (`backends.for_devices` on one CPU
device, every kernel taken whatever this machine's choice) against the model
as written, which TPUs and GPUs run: the same logits and gradients on every
reference twin, the same initial parameters, and XLA's code wherever a
kernel does not apply."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vit_jax
from conftest import CARD_MODELS, GOOGLE_TWINS, data_path, google_twin, jit_init, timm_twin
from vit_jax import backends
from vit_jax.backends.cpu import choice, kernels
from vit_jax.checkpoints import load_params
from vit_jax.models import registry

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason='no C++ compiler for the CPU kernels')
ONE_CPU = jax.devices('cpu')[:1]


@pytest.fixture(autouse=True)
def every_kernel(monkeypatch):
  monkeypatch.setenv(choice.ENV, '1')


def _outputs(model, params, x, kernels_on: bool, grads: bool) -> tuple:
  """(logits, and with `grads` a training loss and its gradients) in one
  program: one compile per path."""
  def logits(p, train=False):
    with backends.for_devices(ONE_CPU, kernels=kernels_on):
      return model.apply({'params': p}, x, train=train)

  def outputs(p):
    if not grads:
      return (logits(p),)
    loss = lambda p: jnp.sum(jnp.sin(logits(p, train=True)))  # noqa: E731
    return (logits(p), *jax.value_and_grad(loss)(p))
  return jax.jit(outputs)(params)


def _hlo(model, params, x, kernels_on=True, train=False) -> str:
  def apply(p):
    with backends.for_devices(ONE_CPU, kernels=kernels_on):
      return model.apply({'params': p}, x, train=train, rngs={'dropout': jax.random.PRNGKey(0)})
  return jax.jit(apply).lower(params).as_text()


def _assert_same_logits_and_gradients(cfg, params, x):
  model = registry.module_from_config(cfg)
  # the hybrids' block gradients are the other twins'; the stem's are XLA's on both
  kernel, written = (_outputs(model, params, x, on, grads=not cfg.resnet) for on in (True, False))
  np.testing.assert_allclose(np.asarray(kernel[0]), np.asarray(written[0]), atol=2e-5, rtol=1e-5)
  if cfg.resnet:
    return
  (_, lk, gk), (_, lx, gx) = kernel, written
  np.testing.assert_allclose(float(lk), float(lx), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(gk), jax.tree.leaves(gx)):
    # relative to each leaf's largest gradient; absolute for those that are
    # zero in exact arithmetic (the key bias's: it shifts a query's scores alike)
    a, b = np.asarray(a), np.asarray(b)
    assert np.abs(a - b).max() <= 2e-4 * np.abs(b).max() + 1e-6


@pytest.mark.parametrize('name', CARD_MODELS)
def test_timm_twins_are_the_same_on_both_paths(name):
  overrides, io = timm_twin(name)
  cfg, params = load_params(data_path('timm', f'{name}.safetensors'), name, **overrides)
  _assert_same_logits_and_gradients(cfg, params, io['input_nhwc'])


@pytest.mark.parametrize('twin', sorted(GOOGLE_TWINS))
def test_google_twins_are_the_same_on_both_paths(twin):
  overrides, io = google_twin(twin)
  cfg, params = load_params(data_path('google', f'{twin}.npz'), GOOGLE_TWINS[twin], **overrides)
  _assert_same_logits_and_gradients(cfg, params, io['input_nhwc'])


TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64,
            num_classes=10)


def test_every_layer_the_kernels_take_runs_on_them():
  model = vit_jax.create_model('vit_base_patch16_224', **TINY)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  with backends.for_devices(ONE_CPU):
    params = jit_init(model, x)['params']  # init runs as written
  want = jit_init(model, x)['params']
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  text = _hlo(model, params, x)
  layers = TINY['num_layers']
  assert text.count('vit_attention_cpu_inference') == layers
  assert text.count('vit_layer_norm_cpu_forward') == 2 * layers + 1
  assert text.count('vit_gelu_cpu_forward') == layers
  assert 'vit_' not in _hlo(model, params, x, kernels_on=False)


def test_what_the_kernels_do_not_take_runs_as_written():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  bf16 = vit_jax.create_model('vit_base_patch16_224', **TINY, dtype='bfloat16')
  params = jit_init(bf16, x)['params']
  assert 'vit_' not in _hlo(bf16, params, x)
  # attention dropout needs the explicit weights; the other layers keep their kernels
  dropout = vit_jax.create_model('vit_base_patch16_224', **TINY, attention_dropout_rate=0.1)
  text = _hlo(dropout, params, x, train=True)
  assert 'vit_attention_cpu' not in text and 'vit_layer_norm_cpu_forward' in text
  # head_dim 24 is not whole vectors of 16: XLA's attention, the LayerNorm's kernel
  odd = vit_jax.create_model('vit_base_patch16_224', **dict(TINY, hidden_size=48))
  odd_params = jit_init(odd, x)['params']
  text = _hlo(odd, odd_params, x)
  assert 'vit_attention_cpu' not in text and 'vit_layer_norm_cpu_forward' in text


def test_without_a_compiler_the_model_runs_as_written(monkeypatch):
  monkeypatch.setattr(kernels, 'available', lambda: False)
  model = vit_jax.create_model('vit_base_patch16_224', **TINY)
  x = jnp.ones((1, 32, 32, 3))
  params = jit_init(model, x)['params']
  assert 'vit_' not in _hlo(model, params, x)
