"""Mesh and sharding helpers: batch assembly, FSDP specs, memory per device."""
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from vit_jax import parallel

HERE = os.path.dirname(os.path.abspath(__file__))


def test_fsdp_spec_shards_the_largest_divisible_axis_and_keeps_small_arrays_whole():
  assert parallel.fsdp_spec((1280, 5120), 8) == P(None, 'fsdp')
  assert parallel.fsdp_spec((1280, 16, 80), 8) == P('fsdp', None, None)
  assert parallel.fsdp_spec((1, 257, 1280), 8) == P(None, None, 'fsdp')  # 257 is odd
  assert parallel.fsdp_spec((1280,), 8) == P()  # below min_size
  assert parallel.fsdp_spec((1280, 5120), 1) == P()
  assert parallel.fsdp_spec((3, 7, 1001), 8) == P()  # nothing divides


def test_mesh_and_batch_on_this_process():
  mesh = parallel.make_mesh()
  assert mesh.shape == {'data': jax.device_count(), 'fsdp': 1}
  with pytest.raises(ValueError, match='must divide the device count'):
    parallel.make_mesh(fsdp=jax.device_count() + 1)
  local = {'image': np.arange(jax.device_count() * 6, dtype=np.float32).reshape(-1, 3, 2)}
  batch = parallel.global_batch(mesh, local)
  np.testing.assert_array_equal(np.asarray(batch['image']), local['image'])
  assert parallel.check_batch_size(jax.device_count() * 4) == jax.device_count() * 4


def test_prefetch_keeps_order_and_reads_only_size_batches_ahead():
  mesh = parallel.make_mesh()
  n = jax.device_count()
  read = []

  def source():
    for i in range(5):
      read.append(i)
      yield {'image': np.full((n, 2), i, np.float32), 'label': np.full((n,), i, np.int32)}

  it = parallel.prefetch_to_device(source(), mesh, size=2)
  first = next(it)
  assert read == [0, 1, 2]  # the one handed out and two ahead
  assert first['image'].sharding == parallel.batch_sharding(mesh)
  rest = list(it)
  assert [int(b['label'][0]) for b in [first] + rest] == [0, 1, 2, 3, 4]
  np.testing.assert_array_equal(np.asarray(rest[-1]['image']), np.full((n, 2), 4))


def test_fsdp_state_of_vit_h14_fits_an_eighth_of_the_replicated_memory():
  """XLA's memory analysis on 8 simulated devices: params + momentum of
  ViT-H/14 (632M parameters) need at most 1/8 of the replicated bytes + 10%."""
  out = subprocess.run([sys.executable, os.path.join(HERE, 'workers', 'fsdp_memory.py'),
                        'vit_huge_patch14_224'], capture_output=True, text=True, timeout=300,
                       check=True).stdout
  sizes = {int(k): int(v) for k, v in re.findall(r'fsdp=(\d+) bytes=(\d+)', out)}
  params = 632_045_800
  assert sizes[1] == pytest.approx(2 * 4 * params, rel=1e-5)  # replicated: all of it
  assert sizes[8] <= sizes[1] / 8 * 1.10
