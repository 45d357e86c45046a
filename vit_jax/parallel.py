"""Device mesh and sharding helpers shared by training and evaluation.

One mesh over every device of every process: a `data` axis for the batch and
an optional `fsdp` axis over which parameters and optimizer state are sharded
(the batch is split over both axes). Each process feeds only its own rows and
`global_batch` assembles the global array from the per-process pieces.
"""
from __future__ import annotations

import collections
import itertools
from typing import Any, Iterable, Iterator, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')


def make_mesh(fsdp: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A (data, fsdp) mesh over `devices` (default: all of every process);
  `fsdp` devices share each replica."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if fsdp < 1 or n % fsdp:
    raise ValueError(f'fsdp={fsdp} must divide the device count {n}')
  return Mesh(np.asarray(devices).reshape(n // fsdp, fsdp), BATCH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every device of the mesh."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, what: str = 'batch_size',
                     mesh: Optional[Mesh] = None) -> int:
  """The per-process batch; a clear error when the devices (of `mesh`,
  default all) don't divide it."""
  devices = jax.devices() if mesh is None else list(mesh.devices.flat)
  n = len(devices)
  if global_batch % n:
    raise ValueError(f'{what}={global_batch} is not divisible by the {n} devices; '
                     f'use a multiple of {n}')
  return global_batch // len({d.process_index for d in devices})


def global_batch(mesh: Mesh, local: Any) -> Any:
  """Global arrays, batch-sharded, from this process's rows of every leaf."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local)


def prefetch_to_device(batches: Iterable[Any], mesh: Mesh, size: int = 2) -> Iterator[Any]:
  """Global batch-sharded arrays, `size` batches ahead: their host-to-device
  copies overlap the running steps instead of preceding each (as big_vision)."""
  it = iter(batches)
  queue = collections.deque(global_batch(mesh, b) for b in itertools.islice(it, size))
  while queue:
    queue.extend(global_batch(mesh, b) for b in itertools.islice(it, 1))
    yield queue.popleft()


def fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int = 2 ** 14) -> P:
  """Shard the largest axis divisible by `fsdp` over the fsdp axis.

  Small arrays (biases, norms) stay replicated: sharding them saves nothing
  and costs a collective each.
  """
  if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % fsdp == 0:
      spec = [None] * len(shape)
      spec[axis] = 'fsdp'
      return P(*spec)
  return P()


def param_shardings(mesh: Mesh, tree: Any) -> Any:
  """NamedShardings (FSDP-style where the mesh has an fsdp axis) for a tree
  of arrays or ShapeDtypeStructs."""
  fsdp = mesh.shape['fsdp']
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp)), tree)
