"""Input worker processes: they survive the SIGTERM a preemption sends to the
whole process group, leave nothing in /dev/shm, and a dead one stops the
run in one line instead of hanging it."""
import os
import signal
import time

import numpy as np
import pytest

from vit_jax.data.sources import DatasetError, open_source
from vit_jax.data.train_pipeline import train_batches
from eval_helpers import photo_folder
from train_helpers import input_workers


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  return open_source('folder:' + photo_folder(str(tmp_path_factory.mktemp('wp') / 'd'),
                                              counts=(3, 3)))


def _workers() -> list[int]:
  return input_workers(os.getpid())


def _batches(src, **kw):
  return train_batches(src, seed=0, start_step=0, total_steps=50, batch_size=6,
                       image_size=16, workers=2, processes=True, **kw)


def _ring_files(pid: int) -> set[str]:
  """The batch-ring files a process maps, as /proc names them."""
  with open(f'/proc/{pid}/maps') as f:
    fields = [line.split(None, 5) for line in f]
  return {f[5].strip() for f in fields if len(f) == 6 and 'vit_jax_input_' in f[5]}


def test_workers_ignore_sigterm_and_leave_no_shared_memory(source):
  batches = _batches(source)
  first = next(batches)
  workers = _workers()
  assert len(workers) == 2
  # The workers map one ring, as this process does, already unlinked: nothing
  # is left behind in /dev/shm whatever happens to the run.
  mapped = [_ring_files(pid) for pid in workers]
  assert len(mapped[0]) == 1 and mapped[0] == mapped[1], mapped
  path, = mapped[0]
  assert path in _ring_files(os.getpid())
  assert path.endswith(' (deleted)'), path
  assert not os.path.exists(path.removesuffix(' (deleted)'))
  for pid in workers:
    os.kill(pid, signal.SIGTERM)
  time.sleep(0.5)
  rest = [next(batches) for _ in range(10)]  # would fail if a worker had died
  assert all(b['image'].shape == (6, 16, 16, 3) for b in [first] + rest)
  batches.close()
  deadline = time.time() + 10
  while _workers() and time.time() < deadline:
    time.sleep(0.1)
  assert not _workers()


def test_a_dead_worker_stops_the_run_in_one_line(source):
  batches = _batches(source)
  next(batches)
  for pid in _workers():
    os.kill(pid, signal.SIGKILL)
  with pytest.raises(DatasetError, match=r'input worker process \d+ exited with '
                     r'code -9'):
    for _ in range(50):
      next(batches)
  batches.close()


def test_batches_from_processes_are_copies_the_ring_does_not_overwrite(source):
  batches = _batches(source)
  got = [next(batches) for _ in range(6)]  # more steps than the ring has slots
  batches.close()
  again = list(train_batches(source, seed=0, start_step=0, total_steps=6, batch_size=6,
                             image_size=16, workers=1))
  for x, y in zip(got, again):
    np.testing.assert_array_equal(x['image'], y['image'])
