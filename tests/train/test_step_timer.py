"""Each log interval's step time, input wait, TFLOP/s and MFU, and the
input-bound warning, on a controlled clock."""
import types

import numpy as np
import pytest

from vit_jax import utilization
from vit_jax.train import step_timer
from vit_jax.train.step_timer import InputBoundWarning, StepTimer


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now

  def sleep(self, seconds):
    self.now += seconds


def slow_batches(clock, seconds):
  """A batch source that takes `seconds` for each batch."""
  while True:
    clock.sleep(seconds)
    yield {'image': None}


def run_interval(timer, clock, batches, steps, step_seconds, first_step):
  for step in range(first_step, first_step + steps):
    timer.next_batch(batches)
    clock.sleep(step_seconds)  # the step, once its batch is there
  return timer.fields(first_step + steps - 1)


def test_the_wait_for_input_is_a_fraction_of_the_interval():
  clock = Clock()
  timer = StepTimer(8, start_step=10, flops_per_step=4e12, num_devices=2, peak_tflops=10.0,
                    clock=clock)
  batches = slow_batches(clock, 0.3)
  out = run_interval(timer, clock, batches, steps=5, step_seconds=0.1, first_step=11)
  assert out == pytest.approx({'img_per_sec': 20.0, 'step_time_s': 0.4, 'input_wait': 0.75,
                               'tflops_per_device': 5.0, 'mfu': 0.5})
  # the next interval counts its own wait only, not the logging between them
  clock.sleep(7.0)
  timer.restart(15)
  out = run_interval(timer, clock, slow_batches(clock, 0.1), steps=2, step_seconds=0.3,
                     first_step=16)
  assert out['input_wait'] == pytest.approx(0.25) and out['step_time_s'] == pytest.approx(0.4)


def test_flop_figures_only_with_the_flops_and_mfu_only_with_a_peak():
  clock = Clock()
  cpu = StepTimer(8, 0, clock=clock)
  unknown = StepTimer(8, 0, flops_per_step=1e12, num_devices=1, peak_tflops=None, clock=clock)
  clock.sleep(0.5)
  assert set(cpu.fields(1)) == {'img_per_sec', 'step_time_s', 'input_wait'}
  assert unknown.fields(1) == pytest.approx({'img_per_sec': 16.0, 'step_time_s': 0.5,
                                             'input_wait': 0.0, 'tflops_per_device': 2.0})


def _program(platform, kind, devices=2):
  fake = [types.SimpleNamespace(platform=platform, device_kind=kind) for _ in range(devices)]
  return types.SimpleNamespace(mesh=types.SimpleNamespace(devices=np.array(fake)),
                               batch_size=8, model_config='the model')


def test_the_program_timer_follows_the_platform_of_the_step_devices(monkeypatch):
  def forward_flops(model_config):
    assert model_config == 'the model'
    return 1e9
  monkeypatch.setattr(utilization, 'forward_flops', forward_flops)
  gpu = step_timer.for_program(_program('gpu', 'NVIDIA H200'), 0)
  assert (gpu.flops_per_step, gpu.num_devices, gpu.peak_tflops) == (24e9, 2, 989.0)
  tpu = step_timer.for_program(_program('tpu', 'TPU v3', devices=8), 0)
  assert (tpu.flops_per_step, tpu.num_devices, tpu.peak_tflops) == (24e9, 8, 61.5)
  unknown = step_timer.for_program(_program('gpu', 'NVIDIA GeForce RTX 3090'), 0)
  assert (unknown.flops_per_step, unknown.peak_tflops) == (24e9, None)

  monkeypatch.setattr(utilization, 'forward_flops', lambda cfg: pytest.fail('lowered on CPU'))
  cpu = step_timer.for_program(_program('cpu', 'cpu'), 0)
  assert cpu.flops_per_step is None


def test_the_warning_comes_once_then_as_it_persists():
  warning = InputBoundWarning(worker_processes=False)
  assert warning.check(10, 0.9) is None        # the first interval: the compile, the start
  assert warning.check(20, 0.10) is None       # not above 10%
  first = warning.check(30, 0.5)
  assert first == ('input-bound: the steps waited for input 50% of the log interval to step '
                   '30 (1 interval so far over 10%); raise --config.workers (decoder workers '
                   'per host) or set --config.worker_processes=True (decode in processes '
                   'instead of threads)')
  later = [warning.check(40 + 10 * i, 0.2 if i % 2 else 0.05) for i in range(18)]
  warned = [(i, w) for i, w in enumerate(later) if w]
  assert len(warned) == 1 and warned[0][0] == 17    # the 10th interval over 10%
  assert 'to step 210 (10 intervals so far over 10%)' in warned[0][1]


def test_with_worker_processes_the_warning_names_workers_only():
  warning = InputBoundWarning(worker_processes=True)
  warning.check(1, 0.0)
  line = warning.check(2, 0.3)
  assert line.endswith('raise --config.workers (decoder workers per host)')
