"""Training batches as a pure function of (seed, step): resumable exactly.

Row r of the global batch at step s is example `perm_e[(s * B + r) % N]` of
epoch e = (s * B + r) // N, with `perm_e` a seeded permutation; process p
loads rows [p * L, (p + 1) * L). Row r's augmentation draws its uniforms from
Philox counters reserved for (seed, s, r) (the crop and flip in one stream,
RandAugment's choices in another), so the global batch does not depend on
the number of hosts, workers, or whether they are threads or processes, and
a run restarted at step s sees the batches it would have seen.

RandAugment (`randaug=(N, M)`, `vit_jax.data.randaugment`) runs on each
crop after the flip, as big_vision's `inception_crop|flip_lr|randaug(N, M)`.

Workers fill chunks of rows in place: threads write into the batch being
built (decoding and resizing release the GIL); worker processes write into
shared memory (`worker_pool`), so no image is pickled. Several steps are in
flight at once, so the workers never wait for the consumer.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import math
import os
from typing import Any, Iterator, Optional

import numpy as np

from vit_jax.data.augment import DRAWS_PER_IMAGE, augment_into
from vit_jax.data.batch_buffers import BatchBuffers
from vit_jax.data.decode import UndecodableImage
from vit_jax.data.randaugment import RandAugment, parse_randaug
from vit_jax.data.sources import DatasetError

# Philox4x64 yields four 64-bit words per counter: each row owns a whole
# number of counters, so a row's uniforms are the same whichever chunk draws
# them. The second counter word selects the stream.
CROP_STREAM, RANDAUG_STREAM = 0, 1
_MAX_CHUNK = 32


def default_workers() -> int:
  """The cores this process may use (its affinity mask, as a container or
  `taskset` sets it), not the machine's."""
  return len(os.sched_getaffinity(0))


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def example_indices(seed: int, step: int, rows: np.ndarray, batch_size: int, n: int
                    ) -> np.ndarray:
  """The dataset index of each global row of `step`."""
  pos = step * batch_size + np.asarray(rows, np.int64)
  epochs = pos // n
  out = np.empty(len(pos), np.int64)
  for e in np.unique(epochs):
    at = epochs == e
    out[at] = _permutation(seed, int(e), n)[pos[at] % n]
  return out


def example_index(seed: int, step: int, row: int, batch_size: int, n: int) -> int:
  return int(example_indices(seed, step, np.array([row]), batch_size, n)[0])


def row_draws(seed: int, step: int, first_row: int, rows: int,
              per_row: int = DRAWS_PER_IMAGE, stream: int = CROP_STREAM) -> np.ndarray:
  """(rows, >= per_row) uniforms in [0, 1) of global rows first_row, first_row + 1, ..."""
  counters = math.ceil(per_row / 4)
  bits = np.random.Philox(key=[seed % 2 ** 64, step],
                          counter=[first_row * counters, stream, 0, 0])
  return np.random.Generator(bits).random((rows, 4 * counters))


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Everything a worker (thread or process) needs to fill rows of any step."""
  source: Any
  seed: int
  batch_size: int        # global
  local_batch: int       # rows of this process
  process_index: int
  image_size: int
  crop_scale: tuple[float, float]
  flip: bool
  interpolation: str
  randaug: Optional[tuple[int, float]] = None   # (layers, magnitude)

  def fill(self, step: int, lo: int, hi: int, images: np.ndarray, labels: np.ndarray) -> None:
    """This process's rows [lo, hi) of `step` into images[0:hi-lo], labels[0:hi-lo]."""
    first = self.process_index * self.local_batch + lo
    indices = example_indices(self.seed, step, np.arange(first, first + hi - lo),
                              self.batch_size, len(self.source))
    draws = row_draws(self.seed, step, first, hi - lo).tolist()
    policy = RandAugment(*self.randaug) if self.randaug else None
    if policy:
      choices = row_draws(self.seed, step, first, hi - lo, policy.draws, RANDAUG_STREAM).tolist()
    for j, index in enumerate(indices.tolist()):
      record = self.source[index]
      try:
        augment_into(images[j], record['image'], draws[j], scale=self.crop_scale,
                     flip=self.flip, interpolation=self.interpolation)
      except UndecodableImage as e:
        where = getattr(self.source, 'spec', 'the dataset')
        raise DatasetError(f'training image {record.get("id", index)} of {where} cannot be '
                           f'decoded ({e}); remove or replace it') from None
      if policy:
        images[j] = policy.apply(images[j], choices[j])
      labels[j] = record['label']


def chunks(local_batch: int, workers: int) -> list[tuple[int, int]]:
  """[lo, hi) row ranges: two per worker, at most _MAX_CHUNK rows each."""
  size = max(1, min(_MAX_CHUNK, local_batch // (2 * workers)))
  return [(lo, min(lo + size, local_batch)) for lo in range(0, local_batch, size)]


def steps_in_flight(local_batch: int, workers: int, chunk: int) -> int:
  """Enough queued chunks that every worker has a second one waiting."""
  return max(2, math.ceil(2 * workers * chunk / local_batch))


class _Threads:
  """Chunks filled by threads, straight into the batch's own arrays."""

  def __init__(self, augmentation: Augmentation, workers: int, depth: int):
    self.aug = augmentation
    self.pool = concurrent.futures.ThreadPoolExecutor(workers, 'vit_jax_input')
    self.buffers = BatchBuffers(augmentation.local_batch, augmentation.image_size, depth)

  def start(self, step: int, row_chunks: list[tuple[int, int]]) -> Any:
    images, labels = self.buffers.take()
    futures = [self.pool.submit(self.aug.fill, step, lo, hi, images[lo:hi], labels[lo:hi])
               for lo, hi in row_chunks]
    return images, labels, futures

  def finish(self, handle: Any) -> dict:
    images, labels, futures = handle
    for f in futures:
      f.result()
    return {'image': images, 'label': labels}

  def close(self) -> None:
    self.pool.shutdown(wait=True, cancel_futures=True)


def train_batches(source, *, seed: int, start_step: int, total_steps: int, batch_size: int,
                  image_size: int, process_index: int = 0, process_count: int = 1,
                  crop_scale: tuple[float, float] = (0.08, 1.0), flip: bool = True,
                  interpolation: str = 'bilinear', workers: Optional[int] = None,
                  processes: bool = False,
                  randaug: Optional[tuple[int, float]] = None) -> Iterator[dict]:
  """This process's rows of the global batches of steps [start_step, total_steps):
  dicts of `image` uint8 (L, S, S, 3) and `label` int32 (L,). `workers`
  (default: the cores this process may use) threads, or processes with
  `processes=True`, decode and augment; `randaug=(N, M)` adds big_vision's
  RandAugment after the crop and flip."""
  workers = workers or default_workers()
  local = batch_size // process_count
  aug = Augmentation(source, seed, batch_size, local, process_index, image_size,
                     tuple(crop_scale), flip, interpolation, parse_randaug(randaug, 'randaug'))
  row_chunks = chunks(local, workers)
  depth = steps_in_flight(local, workers, row_chunks[0][1])
  if processes:
    from vit_jax.data.worker_pool import Processes
    pool = Processes(aug, workers, depth)
  else:
    pool = _Threads(aug, workers, depth)
  try:
    pending: collections.deque = collections.deque()
    for step in range(start_step, total_steps):
      pending.append(pool.start(step, row_chunks))
      if len(pending) >= depth:
        yield pool.finish(pending.popleft())
    while pending:
      yield pool.finish(pending.popleft())
  finally:
    pool.close()
