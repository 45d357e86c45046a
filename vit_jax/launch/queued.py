"""A TPU slice created as a queued resource (`gcloud compute tpus
queued-resources create NAME --node-id=NAME ...`), waited on until ACTIVE,
and, once preempted or suspended (a Spot slice cannot be restarted, only
deleted and created again), deleted and created again, as Levanter's
launcher does."""
from __future__ import annotations

import json
import time
from typing import Callable, Optional

from vit_jax.exit_codes import RESUMABLE
from vit_jax.launch.transport import LaunchError, TpuVm, run

# the queued resource's `state.state`
WAITING = ('CREATING', 'ACCEPTED', 'PROVISIONING', 'WAITING_FOR_RESOURCES')
LOST = ('FAILED', 'SUSPENDING', 'SUSPENDED', 'DELETING')


class QueuedSlice:
  """The slice `tpu.name`, of `accelerator` (e.g. v4-32) with `runtime` (e.g.
  tpu-ubuntu2204-base), on Spot or reserved capacity or neither."""

  def __init__(self, tpu: TpuVm, accelerator: str, runtime: str, capacity: Optional[str],
               poll_s: float = 30.0, say: Callable[[str], None] = print,
               sleep: Callable[[float], None] = time.sleep):
    self.tpu, self.accelerator, self.runtime, self.capacity = tpu, accelerator, runtime, capacity
    self.poll_s, self._say, self._sleep = poll_s, say, sleep

  def _gcloud(self, verb: str, *flags: str) -> list[str]:
    return self.tpu.gcloud('queued-resources', verb, self.tpu.name, *flags)

  def state(self) -> Optional[str]:
    """ACTIVE, one of WAITING or LOST, ...; None when there is none."""
    out = run(self._gcloud('describe', '--format=json'), timeout=120)
    if out.returncode:
      if 'NOT_FOUND' in out.stderr or 'not found' in out.stderr.lower():
        return None
      raise LaunchError(f'queued resource {self.tpu.name}: {out.error_line()}')
    return json.loads(out.stdout).get('state', {}).get('state')

  def _failure(self) -> str:
    out = run(self._gcloud('describe', '--format=json'), timeout=120)
    try:
      state = json.loads(out.stdout)['state']
      return state['failedData']['error']['message']
    except (ValueError, KeyError, TypeError):
      return 'no reason given'

  def create(self) -> None:
    flags = [f'--node-id={self.tpu.name}', f'--accelerator-type={self.accelerator}',
             f'--runtime-version={self.runtime}']
    if self.capacity:
      flags.append(f'--{self.capacity}')
    self._say(f'creating {self.accelerator} slice {self.tpu.name} in {self.tpu.zone} as a '
              f'queued resource{f" ({self.capacity})" if self.capacity else ""}')
    out = run(self._gcloud('create', *flags), timeout=600)
    if out.returncode:
      raise LaunchError(f'creating queued resource {self.tpu.name}: {out.error_line()}')
    self.tpu.refresh()

  def delete(self) -> None:
    self._say(f'deleting queued resource {self.tpu.name} (its slice with it)')
    out = run(self._gcloud('delete', '--force'), timeout=1800)
    if out.returncode and self.state() is not None:
      raise LaunchError(f'deleting queued resource {self.tpu.name}: {out.error_line()}',
                        RESUMABLE)

  def wait_active(self) -> None:
    said = None
    while True:
      state = self.state()
      if state == 'ACTIVE':
        self._say(f'slice {self.tpu.name} is ACTIVE')
        return
      if state is None or state in LOST:
        raise LaunchError(f'queued resource {self.tpu.name} is {state or "gone"} before it '
                          f'became ACTIVE: {self._failure()}', RESUMABLE)
      if state != said:
        self._say(f'queued resource {self.tpu.name}: {state}; waiting for ACTIVE')
        said = state
      self._sleep(self.poll_s)

  def ensure(self) -> bool:
    """An ACTIVE slice: the one there is, or a new one in place of a lost one;
    True when it was created now (the workers hold nothing yet)."""
    state = self.state()
    if state in LOST:
      self._say(f'queued resource {self.tpu.name} is {state}')
      self.delete()
      state = None
    if state is None:
      self.create()
    self.wait_active()
    return state is None

  def lost(self) -> bool:
    """Whether the slice is gone (preempted, suspended, failed, deleted)."""
    state = self.state()
    return state is None or state in LOST
