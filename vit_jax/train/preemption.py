"""Stopping at a step every process agrees on when a preemption notice
(SIGTERM) arrives, without an exchange between hosts at every step.

One process: SIGTERM sets a flag, and the step that sees it saves and stops.
Several: JAX's preemption sync point. `jax.distributed.initialize` installs
JAX's own SIGTERM handler, which tells the coordination service; the service
picks the step after the highest one any process has reached, and each
process stops there (about a second after the signal). Asking costs a local
flag, no device or network round trip. A Python handler here would replace
JAX's, so none is installed then.
"""
from __future__ import annotations

import signal

import jax
from jax.experimental import multihost_utils


class Preemption:
  """`reached(step)` after each step: True at the step to save and stop at."""

  def __init__(self):
    self.signalled = False
    self._several = jax.process_count() > 1
    self._previous = None
    if not self._several:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, *_):
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self._several:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
