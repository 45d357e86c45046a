"""Compiling the real training and eval steps for a TPU slice on this CPU
host: the report's figures are the compiled executable's, the collectives
follow the sharding, a step too big says so and names what fits, and a
bfloat16 step multiplies in bfloat16."""
import copy
import json
import os
import subprocess
import sys

import jax
import pytest

from configs import quickstart
from vit_jax import utilization
from vit_jax.plan import hlo, report, steps, topology

pytest.importorskip('libtpu', reason='compiling for TPUs needs libtpu (the test extra has it)')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(**changes):
  """The quickstart's recipe with a small ViT: compiles for a TPU in seconds."""
  c = quickstart.get_config()
  with c.unlocked():
    c.model_overrides = dict(c.model_overrides, num_layers=2)
    for key, value in changes.items():
      if key in ('hidden_size', 'mlp_dim', 'num_heads', 'patch_size', 'num_layers'):
        c.model_overrides = {**c.model_overrides, key: value}
      else:
        c[key] = value
  return c


@pytest.fixture(scope='module')
def v3_8():
  tpu = topology.parse('v3-8')
  devices = topology.devices(tpu)
  return tpu, devices, topology.hbm_bytes_per_device(devices)


def test_slice_names_as_tpu_users_write_them():
  for name, chips, shape, devices in [('v3-8', 4, '2x2', 8), ('v3-32', 16, '4x4', 32),
                                      ('v4-8', 4, '2x2x1', 4), ('v4-32', 16, '2x2x4', 16),
                                      ('v5p-8', 4, '2x2x1', 4), ('v5e-16', 16, '4x4', 16),
                                      ('v5litepod-16', 16, '4x4', 16), ('v6e-8', 8, '2x4', 8),
                                      ('v5p-128', 64, '4x4x4', 64)]:
    s = topology.parse(name)
    assert (s.chips, s.shape, s.chips * s.generation.devices_per_chip) == (chips, shape, devices)
  assert topology.parse('v3-8').peak_flops_per_device == 61.5e12
  for bad in ('v9-8', 'tpu', 'v3-12', 'v4-2'):
    with pytest.raises(topology.TopologyError, match='unknown TPU topology'):
      topology.parse(bad)


@pytest.mark.parametrize('name', ['v4-8', 'v5p-8', 'v5e-16', 'v6e-8'])
def test_libtpu_describes_each_generation(name):
  s = topology.parse(name)
  devices = topology.devices(s)
  assert len(devices) == s.chips * s.generation.devices_per_chip
  assert all(d.platform == 'tpu' for d in devices)
  # the training loop's MFU finds the slice's peak by the device kind libtpu reports
  assert utilization.bf16_peak_tflops(devices[0].device_kind) * 1e12 == s.peak_flops_per_device


def test_no_libtpu_is_one_line(monkeypatch):
  monkeypatch.setitem(sys.modules, 'libtpu', None)  # import libtpu raises ImportError
  with pytest.raises(topology.TopologyError, match=r'needs libtpu: pip install "jax\[tpu\]=='):
    topology.devices(topology.parse('v3-8'))


def test_the_report_is_the_compiled_executables_and_multiplies_in_bfloat16(v3_8, monkeypatch):
  """One compile (of a bfloat16 step): the report's figures are those of the
  executable it compiled, and that executable's products are bfloat16."""
  tpu, devices, hbm = v3_8
  assert 15 * 2 ** 30 < hbm < 16 * 2 ** 30  # a v3 core's 16 GiB less XLA's reserve
  config = _config(dtype='bfloat16')
  executables, compile = [], jax.stages.Lowered.compile

  def kept(self, *args, **kwargs):
    executables.append(compile(self, *args, **kwargs))
    return executables[-1]
  monkeypatch.setattr(jax.stages.Lowered, 'compile', kept)
  out = steps.plan_training(config, 'v3-8')
  compiled, = executables
  stats = compiled.memory_analysis()
  m = out['memory']
  assert (m['argument'], m['output'], m['alias'], m['temp'], m['generated_code']) == (
      stats.argument_size_in_bytes, stats.output_size_in_bytes, stats.alias_size_in_bytes,
      stats.temp_size_in_bytes, stats.generated_code_size_in_bytes)
  assert m['total'] == m['argument'] + m['output'] - m['alias'] + m['temp'] + m[
      'generated_code']
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  assert out['flops_per_step'] == cost['flops'] * 8
  assert out['fits'] is True and out['num_devices'] == 8 and out['hbm_bytes_per_device'] == hbm
  # the model's FLOPs: three forward passes per image; the compiled step adds the update
  assert 1.0 <= out['flops_per_step'] / out['model_flops_per_step'] < 1.1
  bound = max(cost['flops'] / 61.5e12, cost['bytes accessed'] / 450e9)
  assert out['step_time_lower_bound_s'] == bound
  assert out['img_per_sec_upper_bound'] == config.batch_size / bound
  # data-parallel: the gradients' all-reduce is the only collective, no custom call
  text = compiled.as_text()
  assert list(out['collectives']) == ['all-reduce'] and out['custom_calls'] == []
  assert out['collectives']['all-reduce'] == hlo.collectives(text)['all-reduce']
  assert json.loads(json.dumps(out)) == out
  products = hlo.dot_operand_types(text)
  assert sum(products.values()) > 20
  assert {dtypes for dtypes, _ in products} == {('bf16', 'bf16')}, [
      k for k in products if k[0] != ('bf16', 'bf16')]


def test_fsdp_gathers_parameters_and_scatters_gradients():
  """On a v5e-8 (XLA's TPU compiler lowers v3's reduce-scatters as all-reduces);
  head_dim 128: a TPU pads a shard's last dimension to 128 lanes."""
  wide = dict(hidden_size=512, mlp_dim=2048, num_heads=4, num_layers=1)  # kernels dominate
  replicated = steps.plan_training(_config(**wide), 'v5e-8')
  sharded = steps.plan_training(_config(**wide, fsdp=8), 'v5e-8')
  assert {'all-gather', 'reduce-scatter'} <= set(sharded['collectives'])
  assert list(replicated['collectives']) == ['all-reduce']
  arg = replicated['memory']['argument']
  assert sharded['memory']['argument'] <= arg / 8 * 1.1


def test_a_step_far_too_big_says_so_and_names_what_fits(v3_8, tmp_path):
  """2**21 digits a step: twice a v3 core's HBM; micro-batches of half fit."""
  config = _config(num_layers=1, batch_size=2 ** 21)
  out = steps.plan_training(config, 'v3-8', log=lambda *_: None)
  assert out['fits'] is False and out['compiled'] is False
  assert out['memory']['temp'] > out['hbm_bytes_per_device']
  assert out['suggestion']['flags'] in ('--config.accum_steps=2', '--config.accum_steps=4')
  assert out['suggestion']['total'] <= out['hbm_bytes_per_device']
  text = '\n'.join(report.lines(out))
  assert 'does NOT fit' in text and 'fits with --config.accum_steps=' in text


def _cli(script, *args, cwd=ROOT):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=600)


def test_train_and_eval_commands_plan_without_running(tmp_path):
  plan_json = tmp_path / 'plan.json'
  out = _cli('train.py', '--config=quickstart', '--config.model_overrides='
             "{'num_layers': 1, 'hidden_size': 32, 'num_heads': 2, 'mlp_dim': 64, "
             "'num_classes': 10, 'patch_size': 8}", '--compile_for=v3-8',
             '--plan_json=plan.json', '--workdir=run', cwd=tmp_path)  # paths relative to it
  assert out.returncode == 0, out.stderr[-2000:]
  assert not (tmp_path / 'run').exists()
  plan = json.loads(plan_json.read_text())
  for key in ('topology', 'num_devices', 'device_kind', 'hbm_bytes_per_device', 'memory', 'fits',
              'flops_per_step', 'model_flops_per_step', 'collectives', 'custom_calls',
              'step_time_lower_bound_s', 'img_per_sec_upper_bound', 'compile_s'):
    assert key in plan
  assert 'roofline bound' in out.stdout and 'not a measurement' in out.stdout
  assert out.stderr == ''  # libtpu's start-up search for a chip is not shown
  out = _cli('eval.py', '--config.model=vit_base_patch16_224', "--config.model_overrides="
             "{'num_layers': 1, 'hidden_size': 32, 'num_heads': 2, 'mlp_dim': 64}",
             '--config.batch_size=16', '--compile_for=v3-8')
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith('evaluation step for v3-8 (8 x TPU v3), global batch 16')


@pytest.mark.parametrize('args, message', [
    (['--compile_for=v3-7'], "unknown TPU topology 'v3-7'"),
    (['--compile_for=v3-8', '--config.batch_size=12'],
     'batch_size=12 is not divisible by the 8 devices'),
])
def test_bad_input_is_one_line(args, message):
  out = _cli('train.py', '--config=configs/quickstart.py', *args)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [out.stderr.strip()] and message in out.stderr


def test_recipe_variants_leave_the_recipe_alone():
  config = _config()
  before = copy.deepcopy(config)
  variant = steps._variant(config, remat=True, accum_steps=2)
  assert variant.model_overrides['remat'] is True and variant.accum_steps == 2
  assert config == before
  assert jax.devices()[0].platform == 'cpu'  # the host stays a CPU host


@pytest.mark.parametrize('recipe, arg, batch, length', [
    ('bv_plain', None, 1024, 111_477), ('augreg', 'B/16,strong2', 4096, 92_897)])
def test_a_from_scratch_recipe_plans_without_its_data(v3_8, tmp_path, recipe, arg, batch,
                                                      length):
  """The recipe's step as it is (batch, Adam in bfloat16, Mixup, the loss,
  dropout and stochastic depth), its length from the catalogue's size of
  train[:99%] with no data here; one block of a narrow model on 32x32
  images keeps the compile short (the full models' plans: docs/plan.md,
  BENCHMARKS.md)."""
  module = __import__(f'configs.{recipe}', fromlist=['get_config'])
  config = module.get_config(arg) if arg else module.get_config()
  with config.unlocked():
    config.data_dir = str(tmp_path)  # nothing prepared there
    config.image_size = 32
    config.model_overrides = dict(config.model_overrides, num_layers=1, hidden_size=32,
                                  num_heads=2, mlp_dim=64)
  said = []
  out = steps.plan_training(config, 'v3-8', log=said.append)
  assert said == [f'length: {length:,} steps of {batch:,} = '
                  f'{"90.00" if recipe == "bv_plain" else "300.00"} epochs of 1,268,355 examples '
                  '(from total_epochs)']
  assert out['fits'] is True and out['batch_size'] == batch and out['num_devices'] == 8
  assert list(out['collectives']) == ['all-reduce'] and out['custom_calls'] == []
