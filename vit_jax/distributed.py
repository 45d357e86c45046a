"""Joining a multi-host run (explicit coordinator, auto-detection, or none),
and leaving it when another of its processes is lost."""
from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Iterator, Optional

import jax

from vit_jax import exit_codes

# What a collective (gloo, NCCL) or JAX's coordination service says when a
# peer process is gone.
_PEER_GONE = re.compile(r'Connection (closed|reset) by peer|heartbeat|UNAVAILABLE|Socket closed')


def initialize(coordinator_address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int], heartbeat_timeout_s: int = 100) -> None:
  """`coordinator_address='auto'` lets JAX detect the cluster (TPU pods, SLURM,
  ...); 'HOST:PORT' with `num_processes` and `process_id` joins explicitly
  (GPU hosts, or local processes on 127.0.0.1 with CPU collectives over gloo);
  None runs as a single process. A process that sends no heartbeat for
  `heartbeat_timeout_s` is lost: JAX's coordination service then stops the
  others."""
  if not coordinator_address:
    return
  if coordinator_address == 'auto':
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_s)
    return
  if num_processes is None or process_id is None:
    raise ValueError('coordinator_address needs num_processes and process_id too')
  if jax.config.jax_platforms in (None, '', 'cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id, heartbeat_timeout_seconds=heartbeat_timeout_s)


def _peer_gone(error: BaseException) -> Optional[str]:
  """The first line saying a peer process is gone, of `error` or of an error
  it arose from; None when none says so."""
  while error is not None:
    found = next((line.strip() for line in str(error).splitlines()
                  if _PEER_GONE.search(line)), None)
    if found:
      return found[:200]
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def exit_when_a_worker_is_lost(rerun: str) -> Iterator[None]:
  """In a multi-process run, an error saying that another process is gone
  ends this one at once with one line and exit code 42 (resumable); `rerun` says
  what running the command again does. Exiting directly skips JAX's exit
  handler, whose shutdown barrier would wait for the lost process until the
  heartbeat timeout and then abort with a C++ stack trace."""
  try:
    yield
  except Exception as e:  # noqa: BLE001 -- only a lost peer is handled; the rest re-raised
    cause = _peer_gone(e) if jax.distributed.is_initialized() else None
    if cause is None:
      raise
    sys.stdout.flush()
    print(f'error: process {jax.process_index()} of {jax.process_count()} lost another worker '
          f'({cause}); run the same command again on every worker: {rerun}',
          file=sys.stderr, flush=True)
    os._exit(exit_codes.RESUMABLE)
