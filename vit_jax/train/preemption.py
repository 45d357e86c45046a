"""Stopping at a step every process agrees on when a preemption notice
(SIGTERM) arrives, without an exchange between hosts at every step.

One process: SIGTERM sets a flag, and the next step saves and stops.

Several: the protocol of JAX's preemption sync point (TSL's
PreemptionSyncManager) without its once-a-second poll of the signal, which
lets several fast steps pass before the processes agree. The handler posts a
notice to JAX's coordination service at once. On every process a thread
waiting for that notice publishes the last step the loop has passed, holding
the loop at its next step until every process has published (a barrier); all
of them save and stop at the step after the highest. The loop reads a local
variable: no device or network round trip per step.
"""
from __future__ import annotations

import itertools
import signal
import threading
from typing import Any, Optional

import jax

_AGREE_TIMEOUT_MS = 60_000  # every live process posts within milliseconds of the notice
_WAIT_MS = 1_000  # how long the waiting thread blocks before it checks for close()
_runs = itertools.count()  # one key space per loop: a process may train twice


def _coordination_client() -> Any:
  """JAX's client of the coordination service (what orbax uses for the same)."""
  from jax._src import distributed
  return distributed.global_state.client


class Preemption:
  """`reached(step)` after each step: True at the step to save and stop at."""

  def __init__(self, start_step: int, client: Any = None):
    self.signalled_after: Optional[int] = None  # the step the loop had passed at SIGTERM
    self.stop_at: Optional[int] = None
    self._step = start_step
    self._error: Optional[Exception] = None
    self._sender: Optional[int] = None
    self._noticed_after: Optional[int] = None  # the step the loop had passed at the notice
    self._lock = threading.Lock()
    self._closed = threading.Event()
    self._client = client
    if self._client is None and jax.process_count() > 1:
      self._client = _coordination_client()
    # Replaces the handler jax.distributed.initialize installs for its own sync point.
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    self._waiter = None
    if self._client is not None:
      prefix = f'vit_jax/preemption/{next(_runs)}'
      self._notice, self._steps, self._barrier = (prefix + '/notice', prefix + '/step/',
                                                  prefix + '/barrier')
      self._waiter = threading.Thread(target=self._wait, name='vit_jax_preemption',
                                      daemon=True)
      self._waiter.start()

  def _handle(self, *_) -> None:
    if self.signalled_after is not None:  # a second signal changes nothing
      return
    self.signalled_after = self._step
    if self._client is None:
      self.stop_at = self._step + 1
      return
    try:
      self._client.key_value_set(self._notice, str(jax.process_index()), allow_overwrite=True)
    except Exception as e:  # noqa: BLE001 -- the service is gone: the lost-worker path ends the run
      self._error = e

  def _notice_sender(self) -> Optional[str]:
    """The process that posted the notice, once one has; None after close()
    or when the service is gone (the run is ending)."""
    while not self._closed.is_set():
      try:
        return self._client.blocking_key_value_get(self._notice, _WAIT_MS)
      except Exception as e:  # noqa: BLE001 -- a timeout: ask again
        if 'DEADLINE_EXCEEDED' not in str(e):
          return None
    return None

  def _wait(self) -> None:
    """Waits for a notice from any process, then agrees on the step."""
    sender = self._notice_sender()
    if sender is None:
      return
    with self._lock:  # the loop waits at its next step until the step is agreed
      try:
        self._noticed_after = self._step
        self._client.key_value_set(self._steps + str(jax.process_index()),
                                   str(self._noticed_after))
        self._client.wait_at_barrier(self._barrier, _AGREE_TIMEOUT_MS)
        passed = [int(v) for _, v in self._client.key_value_dir_get(self._steps)]
      except Exception as e:  # noqa: BLE001 -- raised in the loop by reached()
        self._error = e
        return
      self.stop_at = max(passed) + 1
      self._sender = int(sender)

  def cause(self) -> str:
    """Why the loop stopped, for the run's last line."""
    if self.signalled_after is not None:
      return f'SIGTERM after step {self.signalled_after}'
    return f'a preemption notice from process {self._sender} after step {self._noticed_after}'

  def reached(self, step: int) -> bool:
    if self._error is not None:
      raise RuntimeError('the processes could not agree on a step to save at after a '
                         f'preemption notice: {self._error}') from self._error
    with self._lock:
      self._step = step
      return self.stop_at is not None and step >= self.stop_at

  def close(self) -> None:
    if self._closed.is_set():
      return
    self._closed.set()
    # JAX's handler was not installed from Python: the default comes back
    signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
    if self._waiter is not None:
      self._waiter.join(timeout=2 * _WAIT_MS / 1000)
