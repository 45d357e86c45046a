"""The step watchdog's timing: an explicit timeout is armed from the first
step; the automatic one is off on the CPU, and elsewhere waits for a log
interval before it is 3 x (compile + the median interval), at least 60 s;
evaluation and checkpointing pause it. (A stuck run end to end:
tests/train/test_run_lifecycle.py.)"""
import pytest

from vit_jax.train import watchdog


class Clock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def _watchdog(setting, compile_s=10.0):
  clock, fired = Clock(), []
  dog = watchdog.StepWatchdog(setting, compile_s, clock=clock, on_timeout=fired.append)
  dog.close()  # the thread is stopped: the test calls check() itself
  return dog, clock


def test_the_settings_a_config_gives():
  assert watchdog.timeout_setting(None, 'cpu') == 0.0
  assert watchdog.timeout_setting(None, 'tpu') is None
  assert watchdog.timeout_setting(5, 'cpu') == 5.0
  with pytest.raises(ValueError, match='step_timeout_s=-1 must be >= 0'):
    watchdog.timeout_setting(-1, 'gpu')


def test_an_explicit_timeout_and_pauses():
  dog, clock = _watchdog(5.0)
  dog.beat(1)
  clock.now = 4.9
  assert not dog.check()
  clock.now = 5.1
  assert dog.check()
  with dog.paused():
    clock.now = 100
    assert not dog.check()
  clock.now = 104  # the pause's end counts as progress
  assert not dog.check()


def test_the_automatic_timeout_follows_the_log_intervals():
  dog, clock = _watchdog(None, compile_s=30.0)
  clock.now = 1e6
  assert dog.timeout_s is None and not dog.check()  # not armed before an interval
  dog.interval(4.0)
  assert dog.timeout_s == 3 * (30 + 4)
  dog.interval(100.0)
  dog.interval(6.0)
  assert dog.timeout_s == 3 * (30 + 6)  # the median, not one slow interval
  small, _ = _watchdog(None, compile_s=1.0)
  small.interval(1.0)
  assert small.timeout_s == watchdog.MIN_AUTO_TIMEOUT_S
  off, clock = _watchdog(0.0)
  clock.now = 1e9
  assert not off.check()
