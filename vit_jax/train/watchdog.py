"""A step watchdog: a process whose training loop stops moving (a hung
collective, a deadlocked input thread, a stuck device) writes every thread's
Python stack to stderr, says in one line which step it waited on, and exits
with 42 (resumable), so that a launcher restarts the run instead of every
worker waiting forever on the stuck one.

The loop beats when it moves on to the next step. Steps are dispatched
asynchronously: between log steps the loop runs ahead of the devices, and a
log step then waits for the steps in flight. So the automatic timeout covers
a log interval's steps: 3 x (the step's compile time + the median wall time
of a log interval), at least 60 s, armed once the first interval is done
(the compile, the input's start). On the CPU it is off; an explicit
`step_timeout_s` is armed from the first step.
"""
from __future__ import annotations

import contextlib
import faulthandler
import os
import statistics
import sys
import threading
import time
from typing import Callable, Iterator, Optional

from vit_jax import exit_codes

MIN_AUTO_TIMEOUT_S = 60.0


def timeout_setting(step_timeout_s: Optional[float], platform: str) -> Optional[float]:
  """What the config asks for: None (automatic), or seconds (0: off). The
  automatic timeout is off on the CPU, where steps share the cores with
  everything else and nothing hangs in a collective of its own."""
  if step_timeout_s is None:
    return 0.0 if platform == 'cpu' else None
  if step_timeout_s < 0:
    raise ValueError(f'step_timeout_s={step_timeout_s} must be >= 0 (0: no watchdog)')
  return float(step_timeout_s)


class StepWatchdog:
  """`beat(step)` when the loop moves on to `step`; `interval(seconds)` after
  each log interval (the automatic timeout follows their median);
  `paused()` around evaluation and checkpointing; `close()` at the end."""

  def __init__(self, setting: Optional[float], compile_s: float,
               clock: Callable[[], float] = time.monotonic,
               on_timeout: Optional[Callable[[str], None]] = None):
    self._auto = setting is None
    self._compile_s = compile_s
    self._timeout = None if self._auto else (setting or None)
    self._intervals: list[float] = []
    self._clock = clock
    self._on_timeout = on_timeout or _exit_resumable
    self._step = 0
    self._last = clock()
    self._paused = 0
    self._stop = threading.Event()
    self._thread = None
    if self._auto or self._timeout:
      self._thread = threading.Thread(target=self._watch, name='step-watchdog', daemon=True)
      self._thread.start()

  @property
  def timeout_s(self) -> Optional[float]:
    return self._timeout

  def beat(self, step: int) -> None:
    self._step, self._last = step, self._clock()

  def interval(self, seconds: float) -> None:
    if not self._auto:
      return
    self._intervals.append(seconds)
    median = statistics.median(self._intervals[-50:])
    self._timeout = max(MIN_AUTO_TIMEOUT_S, 3 * (self._compile_s + median))

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    self._paused += 1
    try:
      yield
    finally:
      self._paused -= 1
      self._last = self._clock()

  def check(self) -> bool:
    """Whether the loop has been stuck past the timeout (the thread's test)."""
    return bool(self._timeout and not self._paused
                and self._clock() - self._last > self._timeout)

  def _watch(self) -> None:
    while not self._stop.wait(1.0 if not self._timeout else min(1.0, self._timeout / 10)):
      if self.check():
        self._on_timeout(f'error: no training step finished in {self._timeout:.0f} s: the '
                         f'loop waited on step {self._step} (a hung collective or input, or a '
                         'stuck device; every thread\'s stack is above); exiting with 42 '
                         'to be restarted: the same command resumes from the last complete '
                         'checkpoint')
        return

  def close(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()


def _exit_resumable(line: str) -> None:
  """Every thread's Python stack, the line, and exit 42 at once: the stuck
  thread never returns, and JAX's exit handlers could wait on it."""
  sys.stdout.flush()
  faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
  print(line, file=sys.stderr, flush=True)
  os._exit(exit_codes.RESUMABLE)
