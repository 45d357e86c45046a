"""The training loop, in explicit sections like big_vision's train.py.

Model and data config -> mesh and shardings from the abstract state ->
restore or initialise (jit with out_shardings) -> the donating step, compiled
ahead (through the workdir's compilation cache) -> loop: log, evaluate,
checkpoint, and stop cleanly on SIGTERM, a non-finite step or a stuck one.
Between log steps the loop moves nothing from the devices to the host: steps
are dispatched while the devices run the previous ones.
"""
from __future__ import annotations

import os
import signal
import time

import jax
import ml_collections

from vit_jax import backends, parallel, summary
from vit_jax.data.sources import DatasetError, open_source
from vit_jax.data.train_pipeline import default_workers, train_batches
from vit_jax.progress import Progress
from vit_jax.train import compilation, config_keys, duration, goodput, profiling, watchdog
from vit_jax.train.checkpointing import Checkpointer
from vit_jax.train.metrics import MetricsWriter
from vit_jax.train.preemption import Preemption
from vit_jax.train.program import build, model_config_of, model_overrides
from vit_jax.train.step_timer import InputBoundWarning, for_program
from vit_jax.workdir import Workdir

# Tests: 'step:N' SIGKILLs the process before step N (once earlier saves are
# durable); 'save:N' right after the asynchronous save of step N has started;
# 'hang:N' blocks before step N forever; 'slow:MS' sleeps MS ms before each step.
FAULT_ENV = 'VIT_JAX_FAULT'
# what the progress lines show of a metrics row (the keys it has)
SHOWN = ('loss', 'top1', 'input_wait', 'step_time_s', 'tflops_per_device', 'mfu')
# what each evaluation adds to a metrics row: `top1` ... of eval_dataset,
# `NAME/top1` ... of each of `evals`
EVAL_METRICS = ('top1', 'top5')


class NonFiniteError(RuntimeError):
  """The loss or the gradients stopped being finite."""


class Preempted(Exception):
  """SIGTERM stopped the run after it saved: the same command resumes."""


def _fault(kind: str, step: int, before=None) -> None:
  spec = os.environ.get(FAULT_ENV, '')
  if spec == f'{kind}:{step}':
    if before is not None:
      before()
    os.kill(os.getpid(), signal.SIGKILL)
  if kind == 'step' and spec == f'hang:{step}':
    while True:
      time.sleep(3600)
  if kind == 'step' and spec.startswith('slow:'):
    time.sleep(float(spec[len('slow:'):]) / 1000)


def model_config(config: ml_collections.ConfigDict):
  """The model config (and pretrained params, if any) a training config asks for."""
  if config.pretrained == '':  # None trains from scratch; '' marks a fine-tuning recipe
    raise ValueError('this recipe fine-tunes: set --config.pretrained=PATH (any format '
                     'load_params reads)')
  if not config.pretrained:
    return model_config_of(config), None
  from vit_jax.checkpoints import load_params
  return load_params(config.pretrained, config.model, log=print, **model_overrides(config))


def open_evals(config: ml_collections.ConfigDict) -> list[tuple[str, str, object]]:
  """(metrics prefix, spec, source) of each dataset a run evaluates: prefix
  '' for `eval_dataset`, 'NAME/' for each of `evals`."""
  specs = [('', config.eval_dataset)] if config.eval_dataset else []
  specs += [(f'{name}/', spec) for name, spec in config_keys.evals_of(config).items()]
  return [(prefix, spec, open_source(spec, config.data_dir)) for prefix, spec in specs]


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train until `total_steps`; returns the last metrics. Raises Preempted
  once a SIGTERM's step is saved."""
  run = Workdir.at(workdir)
  ledger = goodput.Ledger(run.goodput, enabled=jax.process_index() == 0)
  cache = compilation.use_cache(config.compilation_cache, run)  # before anything compiles
  profile_steps = profiling.parse_steps(config.profile_steps)
  # --- Model, data, mesh, shardings and the step ---
  mcfg, pretrained = model_config(config)
  source = open_source(config.dataset, config.data_dir)
  config = duration.resolved(config, len(source))
  eval_sources = open_evals(config)  # now: a dataset that is not there stops the start
  if source.num_classes > mcfg.num_classes:
    raise DatasetError(f'{config.dataset} has {source.num_classes} classes but the model '
                       f'{mcfg.num_classes}; set model_overrides.num_classes')
  program = build(config, mcfg, pretrained=pretrained)
  model, mesh, shardings = program.model, program.mesh, program.state_shardings
  timeout = watchdog.timeout_setting(config.step_timeout_s,
                                     backends.platform_of(list(mesh.devices.flat)))

  summary.print_startup('training', config, mcfg, mesh, program.abstract_state['params'],
                        config.batch_size)
  _say(duration.describe(config, len(source)))
  changed = summary.keep_config(config, run)

  # --- State: restore or initialise; the step, compiled ---
  ckpt = Checkpointer(run, config.keep_checkpoints)
  start = ckpt.latest_step()
  if start is not None and changed:
    print(f'resuming with a different config: {", ".join(changed)}')
  writer = MetricsWriter(run, start)
  ledger.book('startup')
  if start is not None:
    state = ckpt.restore(start, program.abstract_state)
    ledger.book('restore', steps=start)
    print(f'resumed from {workdir} at step {start}')
  else:
    state = jax.jit(program.init, out_shardings=shardings)(pretrained)
    start = 0
    ledger.book('startup')
  compiled = compilation.compile_step(program.step, program.abstract_state,
                                      *program.abstract_batch())
  ledger.book('compile')
  _say(compiled.line(cache))
  if ledger.reached_before > start:
    _say(f'steps {start + 1}-{ledger.reached_before} run again: an earlier attempt got to '
         f'step {ledger.reached_before}, past the checkpoint of step {start}')
  step_fn = compiled.step

  eval_step = None

  def evaluate_now() -> dict:
    from vit_jax.eval.evaluate import evaluate, make_eval_step
    nonlocal eval_step
    eval_step = eval_step or make_eval_step(model, mcfg.mean, mcfg.std, mesh.devices.flat)
    row = {}
    for prefix, _, eval_source in eval_sources:
      out = evaluate(model, state['params'], eval_source, model_config=mcfg,
                     batch_size=config.eval_batch_size, mesh=mesh,
                     workers=config.workers or default_workers(), progress=False,
                     step=eval_step)
      row.update({prefix + k: out[k] for k in EVAL_METRICS})
    return row

  # --- The loop ---
  preemption = Preemption(start)
  guard = watchdog.StepWatchdog(timeout, compiled.compile_s)
  profiler = profiling.StepProfiler(profile_steps, config.profile_all_hosts, run)
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
  interval_start = time.monotonic()
  try:
    for step in range(start + 1, config.total_steps + 1):
      guard.beat(step)
      # nothing comes back from the devices here: the host dispatches ahead
      with jax.transfer_guard_device_to_host('disallow_explicit'):
        _fault('step', step, before=ckpt.wait)
        batch = timer.next_batch(batches)
        ledger.book('input_wait')
        with profiler.step(step):
          state, metrics = step_fn(state, batch['image'], batch['label'])
        bar.update(config.batch_size)
        stop = preemption.reached(step)
      with guard.paused():
        if profiler.finish(step, state):
          _say(f'profile of steps {profile_steps[0]}-{step} written to {run.profiles}')
      logging_step = step % config.log_every == 0 or step == config.total_steps
      evaluating = bool(eval_sources) and (
          (config.eval_every and step % config.eval_every == 0) or step == config.total_steps)
      saving = step % config.checkpoint_every == 0 or step == config.total_steps
      if logging_step or evaluating or saving or stop:
        _check_finite(state)
      if logging_step or evaluating:
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        last.update(timer.fields(step))
        guard.interval(time.monotonic() - interval_start)
      ledger.book_step(step)
      if logging_step or evaluating:
        if evaluating:
          with guard.paused():
            last.update(evaluate_now())
          ledger.book('eval')
        writer.write(step, last)
        bar.log(step, **{k: last[k] for k in SHOWN if k in last})
        warning = input_warning.check(step, last['input_wait'])
        if warning:
          bar.note(warning)
        timer.restart(step)
        ledger.book_step(step, count=0)
      if saving or stop:
        with guard.paused():
          ckpt.save(step, state, mcfg)
        ledger.book('checkpoint')
        _fault('save', step)
      if logging_step or saving:
        ledger.flush()
      if logging_step:
        interval_start = time.monotonic()
      if stop:
        preempted = step
        break
  finally:
    guard.close()
    profiler.close()
    bar.close()
    preemption.close()
    ckpt.wait()
    ckpt.close()
    writer.close()
    ledger.book('checkpoint')
    ledger.flush()
  _say(ledger.summary())
  for prefix, spec, _ in eval_sources:
    if prefix + 'top1' in last:
      _say(f'held-out {spec}: top-1 {100 * last[prefix + "top1"]:.2f}%  '
           f'top-5 {100 * last[prefix + "top5"]:.2f}%')
  if preempted is not None:
    print(f'{preemption.cause()}: saved step {preempted}; exiting with 42: the same command '
          'resumes', flush=True)  # every process: each worker's log says why it stopped
    raise Preempted(preempted)
  return last


def _say(line: str) -> None:
  """A line of process 0's output."""
  if jax.process_index() == 0:
    print(line, flush=True)


def _check_finite(state: dict) -> None:
  bad = int(jax.device_get(state['bad_step'].addressable_data(0)))
  if bad >= 0:
    raise NonFiniteError(f'non-finite loss or gradients at step {bad + 1}; stopped without '
                         'saving a checkpoint after it (lower lr, or check the data)')
