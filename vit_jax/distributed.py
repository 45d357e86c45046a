"""Joining a multi-host run: explicit coordinator, auto-detection, or none."""
from __future__ import annotations

from typing import Optional

import jax


def initialize(coordinator_address: Optional[str], num_processes: Optional[int],
               process_id: Optional[int]) -> None:
  """`coordinator_address='auto'` lets JAX detect the cluster (TPU pods, SLURM,
  ...); 'HOST:PORT' with `num_processes` and `process_id` joins explicitly
  (GPU hosts, or local processes on 127.0.0.1 with CPU collectives over gloo);
  None runs as a single process."""
  if not coordinator_address:
    return
  if coordinator_address == 'auto':
    jax.distributed.initialize()
    return
  if num_processes is None or process_id is None:
    raise ValueError('coordinator_address needs num_processes and process_id too')
  if jax.config.jax_platforms in (None, '', 'cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id)
