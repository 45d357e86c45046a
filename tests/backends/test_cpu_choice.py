"""Which CPU kernels a machine uses: by the instruction set the library is
built for, VIT_JAX_CPU_KERNELS forcing either way, and the programs that
follow (lowered, not run: nothing is timed)."""
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import vit_jax
from vit_jax import backends
from vit_jax.backends.cpu import choice, kernels

ONE_CPU = jax.devices('cpu')[:1]
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64,
            num_classes=10)
# the custom calls of each replacement in a training step
CALLS = {'attention': 'vit_attention_cpu_forward', 'layer_norm': 'vit_layer_norm_cpu_forward',
         'bias_gelu': 'vit_gelu_cpu_backward', 'dense': 'vit_transpose_cpu'}


@pytest.fixture
def built_for(monkeypatch):
  """Makes the library report another instruction set."""
  monkeypatch.delenv(choice.ENV, raising=False)
  return lambda isa: monkeypatch.setattr(kernels, 'instruction_set', lambda: isa)


def _kernels(choices) -> set:
  return {k for k, c in choices.items() if c.kernel}


def test_avx512_builds_take_every_kernel(built_for):
  built_for('avx512')
  got = choice.choices()
  assert _kernels(got) == set(choice.LAYERS)
  assert got['dense'].reason == 'faster than XLA:CPU on AVX-512'


def test_avx2_builds_take_the_kernels_that_win_there(built_for):
  """Without AVX-512 XLA:CPU's dense weight gradients and GELU are as fast
  as the kernels (BENCHMARKS.md); attention and LayerNorm still win."""
  built_for('avx2')
  got = choice.choices()
  assert _kernels(got) == {'attention', 'layer_norm'}
  assert got['attention'].reason == 'faster than XLA:CPU on AVX2 without AVX-512'
  assert got['bias_gelu'].reason == 'XLA:CPU is as fast or faster on AVX2 without AVX-512'


@pytest.mark.parametrize('isa', ['aarch64', 'x86-64', 'other'])
def test_unmeasured_instruction_sets_keep_the_model_as_written(built_for, isa):
  built_for(isa)
  got = choice.choices()
  assert not _kernels(got) and got['attention'].reason == f'not measured on a {isa} build'


def test_without_a_library_no_kernel_is_chosen(built_for, monkeypatch):
  built_for(None)
  monkeypatch.setenv(choice.ENV, '1')
  assert not _kernels(choice.choices())


def test_the_environment_forces_either_way(built_for, monkeypatch):
  built_for('avx512')
  monkeypatch.setenv(choice.ENV, '0')
  got = choice.choices()
  assert not _kernels(got) and got['layer_norm'].reason == 'VIT_JAX_CPU_KERNELS=0'
  built_for('aarch64')
  monkeypatch.setenv(choice.ENV, '1')
  got = choice.choices()
  assert _kernels(got) == set(choice.LAYERS)
  assert got['bias_gelu'].reason == 'VIT_JAX_CPU_KERNELS=1 (built for aarch64)'
  monkeypatch.setenv(choice.ENV, ' ')  # empty: the machine's choice
  assert not _kernels(choice.choices())


def test_another_value_is_one_clear_error(built_for, monkeypatch):
  built_for('avx2')
  monkeypatch.setenv(choice.ENV, 'yes')
  with pytest.raises(ValueError, match=r"^VIT_JAX_CPU_KERNELS='yes': set it to 1 .*, 0 \(none\)"):
    choice.choices()
  with pytest.raises(ValueError, match="unknown layers \\['gelu'\\]"):
    with choice.override({'gelu'}):
      pass


def test_the_library_reports_what_it_was_built_for():
  """-march=native: AVX-512 where this CPU has it, else AVX2 with FMA."""
  if not kernels.available():
    pytest.skip('no C++ compiler for the CPU kernels')
  flags = set(re.search(r'^flags\s*:(.*)$', Path('/proc/cpuinfo').read_text(), re.M)
              .group(1).split()) if Path('/proc/cpuinfo').exists() else set()
  want = ('avx512' if 'avx512f' in flags else 'avx2' if {'avx2', 'fma'} <= flags
          else None)
  if want is None:
    pytest.skip('neither AVX-512 nor AVX2 here')
  assert kernels.instruction_set() == want


def _training_step_text(model) -> str:
  """The lowered gradient of a loss on one CPU device (shapes only)."""
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  params = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)['params']

  def loss(p, x):
    with backends.for_devices(ONE_CPU):
      return jnp.sum(model.apply({'params': p}, x, train=True))
  return jax.jit(jax.grad(loss)).lower(params, x).as_text()


@pytest.mark.skipif(not kernels.available(), reason='no C++ compiler for the CPU kernels')
@pytest.mark.parametrize('isa,env,want', [
    ('avx512', None, set(CALLS)), ('avx2', None, {'attention', 'layer_norm'}),
    ('avx2', '1', set(CALLS)), ('avx512', '0', set()), ('aarch64', None, set())])
def test_the_step_holds_the_chosen_kernels_only(built_for, monkeypatch, isa, env, want):
  built_for(isa)
  if env is not None:
    monkeypatch.setenv(choice.ENV, env)
  text = _training_step_text(vit_jax.create_model('vit_base_patch16_224', **TINY))
  assert {k for k, call in CALLS.items() if call in text} == want


@pytest.mark.skipif(not kernels.available(), reason='no C++ compiler for the CPU kernels')
def test_the_gelu_kernel_without_the_dense_one_leaves_xla_the_weight_gradients():
  model = vit_jax.create_model('vit_base_patch16_224', **TINY)
  with choice.override({'bias_gelu'}):
    text = _training_step_text(model)
  assert CALLS['bias_gelu'] in text and CALLS['dense'] not in text
  with choice.override({'dense'}):  # the MLP's dense layers as the others
    text = _training_step_text(model)
  assert text.count(CALLS['dense']) == 7  # q, k, v, out, the MLP's two, the head
  assert CALLS['bias_gelu'] not in text


def test_describe_says_what_runs_each_layer_and_why(built_for):
  built_for('avx2')
  assert backends.describe(ONE_CPU) == [
      'attention: kernel (faster than XLA:CPU on AVX2 without AVX-512)',
      'dense weight gradient: XLA (XLA:CPU is as fast or faster on AVX2 without AVX-512)',
      'LayerNorm: kernel (faster than XLA:CPU on AVX2 without AVX-512)',
      'MLP bias + GELU: XLA (XLA:CPU is as fast or faster on AVX2 without AVX-512)']
  assert backends.describe(ONE_CPU, 'bfloat16') == [
      'every layer: XLA (the CPU kernels take float32, not bfloat16)']
  cpus = [type('Device', (), dict(platform='cpu', id=i))() for i in range(2)]
  assert backends.describe(cpus) == [
      'every layer: XLA (2 CPU devices; the CPU kernels take one)']
  tpu = [type('Device', (), dict(platform='tpu', id=0))()]
  assert backends.describe(tpu) == ['every layer: XLA (the model as written on tpu)']
