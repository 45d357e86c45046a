"""The training loop, in explicit sections like big_vision's train.py.

Model and data config -> mesh and shardings from the abstract state ->
restore or initialise (jit with out_shardings) -> jitted, donating step ->
loop: log, evaluate, checkpoint, and stop cleanly on SIGTERM or a
non-finite step.
"""
from __future__ import annotations

import os
import signal

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from vit_jax import parallel, summary
from vit_jax.data.sources import DatasetError, open_source
from vit_jax.data.train_pipeline import default_workers, train_batches
from vit_jax.progress import Progress
from vit_jax.train import config_keys
from vit_jax.train.checkpointing import Checkpointer
from vit_jax.train.metrics import MetricsWriter
from vit_jax.train.program import build, model_config_of, model_overrides
from vit_jax.train.step_timer import InputBoundWarning, for_program

# Tests: 'step:N' SIGKILLs the process before step N (once earlier saves are
# durable); 'save:N' right after the asynchronous save of step N has started.
FAULT_ENV = 'VIT_JAX_FAULT'
# what the progress lines show of a metrics row (the keys it has)
SHOWN = ('loss', 'top1', 'input_wait', 'step_time_s', 'tflops_per_device', 'mfu')


class NonFiniteError(RuntimeError):
  """The loss or the gradients stopped being finite."""


class _Preemption:
  """SIGTERM sets a flag; the loop saves at the next step boundary."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, *_):
    self.requested = True

  def agreed(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    return bool(multihost_utils.process_allgather(np.int32(self.requested)).any())

  def restore(self) -> None:
    signal.signal(signal.SIGTERM, self._previous)


def _fault(kind: str, step: int, before=None) -> None:
  if os.environ.get(FAULT_ENV) == f'{kind}:{step}':
    if before is not None:
      before()
    os.kill(os.getpid(), signal.SIGKILL)


def model_config(config: ml_collections.ConfigDict):
  """The model config (and pretrained params, if any) a training config asks for."""
  if config.pretrained == '':  # None trains from scratch; '' marks a fine-tuning recipe
    raise ValueError('this recipe fine-tunes: set --config.pretrained=PATH (any format '
                     'load_params reads)')
  if not config.pretrained:
    return model_config_of(config), None
  from vit_jax.checkpoints import load_params
  return load_params(config.pretrained, config.model, log=print, **model_overrides(config))


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train until `total_steps` (or preemption); returns the last metrics."""
  # --- Model, data, mesh, shardings and the step ---
  mcfg, pretrained = model_config(config)
  source = open_source(config.dataset, config.data_dir)
  if source.num_classes > mcfg.num_classes:
    raise DatasetError(f'{config.dataset} has {source.num_classes} classes but the model '
                       f'{mcfg.num_classes}; set model_overrides.num_classes')
  program = build(config, mcfg, pretrained=pretrained)
  model, mesh, shardings = program.model, program.mesh, program.state_shardings

  summary.print_startup('training', config, mcfg, mesh, program.abstract_state['params'],
                        config.batch_size)
  changed = summary.keep_config(config, workdir)

  # --- State: restore or initialise ---
  ckpt = Checkpointer(workdir, config.keep_checkpoints)
  start = ckpt.latest_step()
  if start is not None and changed:
    print(f'resuming with a different config: {", ".join(changed)}')
  writer = MetricsWriter(workdir, start)
  if start is not None:
    state = ckpt.restore(start, program.abstract_state)
    print(f'resumed from {workdir} at step {start}')
  else:
    state = jax.jit(program.init, out_shardings=shardings)(pretrained)
    start = 0
  step_fn = program.step

  def evaluate_now() -> dict:
    from vit_jax.eval.evaluate import evaluate
    out = evaluate(model, state['params'], config.eval_dataset, model_config=mcfg,
                   batch_size=config.eval_batch_size, mesh=mesh, data_dir=config.data_dir,
                   workers=config.workers or default_workers(), progress=False)
    return {'top1': out['top1'], 'top5': out['top5']}

  # --- The loop ---
  preemption = _Preemption()
  timer = for_program(program, start)
  input_warning = InputBoundWarning(config.worker_processes)
  bar = Progress(config.total_steps, 'train', start_step=start)
  batches = parallel.prefetch_to_device(train_batches(
      source, seed=config.seed, start_step=start, total_steps=config.total_steps,
      batch_size=config.batch_size, image_size=config.image_size,
      process_index=jax.process_index(), process_count=jax.process_count(),
      crop_scale=tuple(config.crop_scale), flip=config.flip, workers=config.workers or None,
      processes=config.worker_processes, randaug=config_keys.randaug_of(config)), mesh)
  last: dict = {}
  preempted = None
  try:
    for step in range(start + 1, config.total_steps + 1):
      _fault('step', step, before=ckpt.wait)
      batch = timer.next_batch(batches)
      state, metrics = step_fn(state, batch['image'], batch['label'])
      bar.update(config.batch_size)
      logging_step = step % config.log_every == 0 or step == config.total_steps
      evaluating = bool(config.eval_dataset) and (
          (config.eval_every and step % config.eval_every == 0) or step == config.total_steps)
      saving = step % config.checkpoint_every == 0 or step == config.total_steps
      stop = preemption.agreed()
      if logging_step or evaluating or saving or stop:
        _check_finite(state)
      if logging_step or evaluating:
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        last.update(timer.fields(step))
        if evaluating:
          last.update(evaluate_now())
        writer.write(step, last)
        bar.log(step, **{k: last[k] for k in SHOWN if k in last})
        warning = input_warning.check(step, last['input_wait'])
        if warning:
          bar.note(warning)
        timer.restart(step)
      if saving or stop:
        ckpt.save(step, state, mcfg)
        _fault('save', step)
      if stop:
        preempted = step
        break
  finally:
    bar.close()
    preemption.restore()
    ckpt.wait()
    ckpt.close()
    writer.close()
  if preempted is not None:
    print(f'SIGTERM: saved step {preempted}; exiting')
  if 'top1' in last:
    print(f'held-out {config.eval_dataset}: top-1 {100 * last["top1"]:.2f}%  '
          f'top-5 {100 * last["top5"]:.2f}%')
  return last


def _check_finite(state: dict) -> None:
  bad = int(jax.device_get(state['bad_step'].addressable_data(0)))
  if bad >= 0:
    raise NonFiniteError(f'non-finite loss or gradients at step {bad + 1}; stopped without '
                         'saving a checkpoint after it (lower lr, or check the data)')
