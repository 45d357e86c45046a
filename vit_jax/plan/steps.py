"""Compile exactly the step a training or evaluation command would run, for
a TPU slice, and report it; where it does not fit, compile the same step
with the settings a TPU user reaches for and name the first that fits."""
from __future__ import annotations

import copy
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections

from vit_jax.models import registry
from vit_jax.plan import report as plan_report
from vit_jax.plan import topology
from vit_jax.utilization import forward_flops, train_flops


def _settings(config: ml_collections.ConfigDict) -> dict:
  return {'dtype': config.dtype, 'remat': bool(dict(config.model_overrides).get('remat')),
          'accum_steps': config.accum_steps, 'fsdp': config.fsdp}


def _train_report(config: ml_collections.ConfigDict, tpu: topology.Slice, devices: list,
                  hbm: int) -> dict:
  from vit_jax.train import program
  mcfg = program.model_config_of(config)
  prog = program.build(config, mcfg, devices)
  lowered = prog.step.lower(prog.abstract_state, *prog.abstract_batch())
  out = plan_report.compile_step(
      lowered, tpu, hbm, batch_size=config.batch_size,
      model_flops=train_flops(mcfg, config.batch_size),
      arguments=(prog.abstract_state, prog.abstract_batch()), donated=prog.abstract_state,
      settings=_settings(config))
  out['step'] = 'training'
  return out


def _variant(config: ml_collections.ConfigDict, **changes) -> ml_collections.ConfigDict:
  c = copy.deepcopy(config)
  with c.unlocked():
    for key, value in changes.items():
      if key == 'remat':
        c.model_overrides = {**c.model_overrides, 'remat': value}
      else:
        c[key] = value
  return c


def _candidates(config: ml_collections.ConfigDict, devices: int, temp_bound: bool
                ) -> Iterator[tuple[str, ml_collections.ConfigDict]]:
  """Settings in the order a TPU user tries them: for a step bound by its
  temporaries, rematerialised blocks, then micro-batches, then both; for one
  bound by its parameters and optimizer state, sharding them (FSDP) first."""
  per_device = config.batch_size // devices
  remat = bool(dict(config.model_overrides).get('remat'))
  accums = [a for a in (2, 4, 8, 16) if a > config.accum_steps and per_device % a == 0]
  fsdps = [f for f in (2, 4, 8, 16) if f > config.fsdp and devices % f == 0]
  tries = [] if remat else [{'remat': True}]
  for a in accums:
    tries += [{'accum_steps': a}] + ([] if remat else [{'remat': True, 'accum_steps': a}])
  sharded = [{'fsdp': f} for f in fsdps]
  tries = tries + sharded if temp_bound else sharded + tries
  for t in tries:
    flags = ' '.join('--config.model_overrides.remat=True' if k == 'remat'
                     else f'--config.{k}={v}' for k, v in t.items())
    yield flags, _variant(config, **t)


def _with_length(config: ml_collections.ConfigDict,
                 log: Callable[[str], None]) -> ml_collections.ConfigDict:
  """The config with its total_steps (the schedule is part of the step): a
  recipe that counts epochs takes the training split's size, from the data
  if it is here, else from the catalogue (`vit_jax.data.splits`)."""
  from vit_jax.train import config_keys, duration
  if config_keys.total_epochs_of(config) is None:
    return duration.resolved(config, 0)
  from vit_jax.data import splits
  size = splits.num_examples(config.dataset, config.data_dir)
  config = duration.resolved(config, size)
  log(duration.describe(config, size))
  return config


def plan_training(config: ml_collections.ConfigDict, topology_name: str,
                  log: Callable[[str], None] = print, search: bool = True) -> dict:
  """The report of the training step `config` gives on the named slice; where
  it does not fit (and `search`), the first variant that does."""
  tpu = topology.parse(topology_name)
  config = _with_length(config, log)
  devices = topology.devices(tpu)
  hbm = topology.hbm_bytes_per_device(devices)
  out = _train_report(config, tpu, devices, hbm)
  if out['fits'] or not search:
    return out
  m = out['memory']
  out['tried'] = []
  for flags, variant in _candidates(config, len(devices), m['temp'] > m['argument']):
    log(f'does not fit; compiling with {flags} ...')
    try:
      trial = _train_report(variant, tpu, devices, hbm)
    except ValueError as e:  # e.g. a batch the micro-batches do not divide
      out['tried'].append(f'{flags}: {e}')
      continue
    total = trial['memory']['total']
    out['tried'].append(f'{flags}: {total / plan_report.GIB:.2f} GiB')
    if trial['fits']:
      out['suggestion'] = {'flags': flags, 'settings': trial['settings'], 'total': total}
      break
  return out


def plan_eval(config: ml_collections.ConfigDict, model_config: ml_collections.ConfigDict,
              topology_name: str) -> dict:
  """The report of the evaluation step on the named slice."""
  from vit_jax import parallel
  from vit_jax.eval.evaluate import make_eval_step
  tpu = topology.parse(topology_name)
  devices = topology.devices(tpu)
  hbm = topology.hbm_bytes_per_device(devices)
  mesh = parallel.make_mesh(1, devices)
  parallel.check_batch_size(config.batch_size, mesh=mesh)
  model = registry.module_from_config(model_config)
  x = jax.ShapeDtypeStruct((1, model_config.image_size, model_config.image_size, 3),
                           jnp.float32)
  replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  params = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated),
      jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)['params'])
  totals = {k: jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated)
            for k in ('count', 'loss', 'top1', 'top5', 'skipped')}
  n, s = config.batch_size, model_config.image_size
  inputs = (jax.ShapeDtypeStruct((n, s, s, 3), jnp.uint8, sharding=batch),
            jax.ShapeDtypeStruct((n,), jnp.int32, sharding=batch),
            jax.ShapeDtypeStruct((n,), jnp.bool_, sharding=batch),
            jax.ShapeDtypeStruct((n,), jnp.bool_, sharding=batch))
  step = make_eval_step(model, model_config.mean, model_config.std, devices)
  lowered = step.lower(params, totals, *inputs)
  out = plan_report.compile_step(
      lowered, tpu, hbm, batch_size=n, model_flops=n * forward_flops(model_config),
      arguments=(params, totals, inputs), donated={}, settings={'dtype': model_config.dtype})
  out['step'] = 'evaluation'
  return out
