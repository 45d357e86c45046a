"""Where each log interval of the training loop goes: the step time, the
fraction of it spent waiting for input, and on TPU and GPU the model's
TFLOP/s per device and its MFU; a warning when input holds the steps back.

JAX dispatches steps asynchronously and a log step reads the step's values,
so at steady state the interval's wall time is the devices' time for its
steps, unless the loop is held up waiting for input: the time it blocks in
`next(batches)`, which includes the host-to-device copy of
`parallel.prefetch_to_device`.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Optional

from vit_jax import backends, utilization
from vit_jax.train.program import TrainProgram

INPUT_BOUND = 0.10  # an interval whose input wait passes this is input-bound


class StepTimer:
  """`next_batch(batches)` in place of `next(batches)`; `fields(step)` at a log
  step once the devices have caught up; `restart(step)` when stepping goes
  on, so that evaluation and logging stay out of the next interval."""

  def __init__(self, batch_size: int, start_step: int, flops_per_step: Optional[float] = None,
               num_devices: int = 1, peak_tflops: Optional[float] = None,
               clock: Callable[[], float] = time.perf_counter):
    self.batch_size, self.flops_per_step = batch_size, flops_per_step
    self.num_devices, self.peak_tflops = num_devices, peak_tflops
    self._clock = clock
    self.restart(start_step)

  def restart(self, step: int) -> None:
    self._start, self._start_step, self._waited = self._clock(), step, 0.0

  def next_batch(self, batches: Iterator[Any]) -> Any:
    before = self._clock()
    batch = next(batches)
    self._waited += self._clock() - before
    return batch

  def fields(self, step: int) -> dict[str, float]:
    """`img_per_sec`, `step_time_s` and `input_wait` (a fraction of the wall
    time) since the last restart; with the model FLOPs, `tflops_per_device`;
    with the device's peak, `mfu` (a fraction of it)."""
    seconds = max(self._clock() - self._start, 1e-9)
    steps = step - self._start_step
    out = {'img_per_sec': steps * self.batch_size / seconds, 'step_time_s': seconds / steps,
           'input_wait': self._waited / seconds}
    if self.flops_per_step:
      tflops = self.flops_per_step / out['step_time_s'] / self.num_devices / 1e12
      out['tflops_per_device'] = tflops
      if self.peak_tflops:
        out['mfu'] = tflops / self.peak_tflops
    return out


def for_program(program: TrainProgram, start_step: int) -> StepTimer:
  """The timer of `program`'s loop: on TPU and GPU (the platform of the
  step's devices) with the model FLOPs, lowered once here, and the device
  kind's peak; on CPU without, so nothing more is compiled."""
  devices = list(program.mesh.devices.flat)
  if backends.platform_of(devices) not in ('tpu', 'gpu'):
    return StepTimer(program.batch_size, start_step)
  return StepTimer(program.batch_size, start_step,
                   utilization.train_flops(program.model_config, program.batch_size),
                   len(devices), utilization.bf16_peak_tflops(devices[0].device_kind))


class InputBoundWarning:
  """A line when an interval's input wait passes INPUT_BOUND, naming the keys
  that feed the steps faster; once, then again only as it persists (at the
  10th, 100th, ... input-bound interval), since every progress line carries
  the figure. The first interval (the compile, the pipeline's start) is not
  judged."""

  def __init__(self, worker_processes: bool):
    self._advice = 'raise --config.workers (decoder workers per host)'
    if not worker_processes:
      self._advice += (' or set --config.worker_processes=True (decode in processes instead '
                       'of threads)')
    self._past_first = False
    self._bound_intervals = 0
    self._next_warning = 1

  def check(self, step: int, input_wait: float) -> Optional[str]:
    """The warning for the interval ending at `step`, if it is due."""
    if not self._past_first:
      self._past_first = True
      return None
    if input_wait <= INPUT_BOUND:
      return None
    self._bound_intervals += 1
    if self._bound_intervals < self._next_warning:
      return None
    self._next_warning *= 10
    count = self._bound_intervals
    return (f'input-bound: the steps waited for input {100 * input_wait:.0f}% of the log '
            f'interval to step {step} ({count} interval{"s" * (count > 1)} so far over '
            f'{100 * INPUT_BOUND:.0f}%); {self._advice}')
