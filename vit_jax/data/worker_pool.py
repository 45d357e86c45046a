"""Input worker processes that write training batches into shared memory.

A host with many cores outgrows one interpreter: even with decoding and
resizing outside the GIL, the per-image Python work of one process caps its
threads (the benchmark prints that ceiling). Here each worker is a process
that maps the same ring of batch slots (a file in /dev/shm, unlinked once
every worker has it open, so nothing outlives the run) and takes (slot,
step, rows) tasks from one pipe, whichever worker is free first; it fills
those rows in place and reports on another pipe. Only these small records
cross the process boundary, never an image. The consumer gets a copy of a
finished slot, which is then free for the next step.

Workers are fresh interpreters (`python -c`, with this process's sys.path):
JAX's threads make fork unsafe, and unlike multiprocessing's spawn nothing
re-imports the caller's main script. They ignore the SIGTERM and SIGINT
sent to their process group (the training process saves and stops them),
and exit when the training process is gone, even after kill -9: the task
pipe then reads end-of-file. The source is pickled to them, so it must be
an importable class's instance (the package's sources are) or plain data.
"""
from __future__ import annotations

import mmap
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from vit_jax.data.batch_buffers import BatchBuffers
from vit_jax.data.sources import DatasetError

_TASK = struct.Struct('<4q')   # slot, step, lo, hi; slot -1 stops the worker
_DONE = struct.Struct('<3q')   # slot (-1: ready), rows done, length of the error text
_POLL_S = 1.0
# A pipe write of at most PIPE_BUF (4096) bytes is atomic: the task pipe then
# only ever holds whole records, which each worker reads one at a time.
_RECORDS_PER_WRITE = 4096 // _TASK.size
_MAX_ERROR = 2048              # a report stays one atomic write too


def _shared_dir(nbytes: int) -> str:
  """/dev/shm when it has room (a container may give it only 64 MB), else the temp dir."""
  try:
    st = os.statvfs('/dev/shm')
    if st.f_bavail * st.f_frsize > 2 * nbytes:
      return '/dev/shm'
  except OSError:
    pass
  return tempfile.gettempdir()


class _Ring:
  """`slots` batches of images and labels laid out in one mapped file."""

  def __init__(self, path: str, slots: int, rows: int, size: int):
    image_shape = (slots, rows, size, size, 3)
    image_bytes = int(np.prod(image_shape))
    with open(path, 'r+b') as f:
      self._map = mmap.mmap(f.fileno(), self.nbytes_for(slots, rows, size))
    self.images = np.ndarray(image_shape, np.uint8, self._map)
    self.labels = np.ndarray((slots, rows), np.int32, self._map, offset=image_bytes)

  @staticmethod
  def nbytes_for(slots: int, rows: int, size: int) -> int:
    return slots * rows * (size * size * 3 + 4)


def _read(fd: int, n: int) -> bytes:
  """Exactly n bytes, or b'' at end-of-file."""
  data = b''
  while len(data) < n:
    chunk = os.read(fd, n - len(data))
    if not chunk:
      return b''
    data += chunk
  return data


def _report(fd: int, slot: int, rows: int, error: str = '') -> None:
  text = error.encode()[:_MAX_ERROR]
  os.write(fd, _DONE.pack(slot, rows, len(text)) + text)


def main() -> None:
  """A worker: `python -c` runs this with the task and report pipes' fds as
  arguments and (augmentation, ring path, slots) pickled on stdin."""
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  tasks, done = int(sys.argv[1]), int(sys.argv[2])
  try:
    aug, path, slots = pickle.load(sys.stdin.buffer)
    import cv2
    cv2.setNumThreads(1)  # one core per worker: OpenCV's own pool would oversubscribe
    ring = _Ring(path, slots, aug.local_batch, aug.image_size)
  except Exception as e:  # noqa: BLE001 -- e.g. a source that does not unpickle here
    _report(done, -1, 0, f'an input worker process could not start ({type(e).__name__}: '
                         f'{e}); decode in threads with --config.worker_processes=False')
    return
  try:
    _report(done, -1, 0)
    _serve(aug, ring, tasks, done)
  except BrokenPipeError:  # the training process is gone
    pass


def _serve(aug: Any, ring: _Ring, tasks: int, done: int) -> None:
  while True:
    record = _read(tasks, _TASK.size)
    if not record:  # the training process is gone
      return
    slot, step, lo, hi = _TASK.unpack(record)
    if slot < 0:
      return
    try:
      aug.fill(step, lo, hi, ring.images[slot, lo:hi], ring.labels[slot, lo:hi])
      _report(done, slot, hi - lo)
    except DatasetError as e:  # an image nothing decodes: the message names it
      _report(done, slot, 0, str(e))
    except Exception as e:  # noqa: BLE001 -- reported to the consumer, which stops the run
      _report(done, slot, 0, f'input worker: {type(e).__name__}: {e}')


class Processes:
  """`workers` processes filling `depth` batch slots; start/finish as the
  thread pool of `train_pipeline`."""

  def __init__(self, aug: Any, workers: int, depth: int):
    self.aug, self.depth = aug, depth
    self.procs: list[subprocess.Popen] = []
    task_r, self.task_w = os.pipe()
    self.done_r, done_w = os.pipe()
    nbytes = _Ring.nbytes_for(depth, aug.local_batch, aug.image_size)
    fd, path = tempfile.mkstemp(prefix='vit_jax_input_', dir=_shared_dir(nbytes))
    try:
      os.ftruncate(fd, nbytes)
      os.close(fd)
      self.ring = _Ring(path, depth, aug.local_batch, aug.image_size)
      init = pickle.dumps((aug, path, depth))
      env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
      for _ in range(workers):
        proc = subprocess.Popen(
            [sys.executable, '-c', 'from vit_jax.data.worker_pool import main; main()',
             str(task_r), str(done_w)], stdin=subprocess.PIPE, pass_fds=(task_r, done_w),
            env=env)
        self.procs.append(proc)
        proc.stdin.write(init)
        proc.stdin.close()
      for _ in self.procs:  # every worker has mapped the file: it can go
        _, _, error = self._get()
        if error:
          raise DatasetError(error)
    except BaseException:
      self.close()
      raise
    finally:
      os.unlink(path)
      os.close(task_r)
      os.close(done_w)
    self.remaining = [0] * depth
    self.next_slot = 0
    self.buffers = BatchBuffers(aug.local_batch, aug.image_size, depth)

  def _get(self) -> tuple[int, int, str]:
    """The next report: (slot, rows, error text)."""
    while True:
      readable = select.select([self.done_r], [], [], _POLL_S)[0]
      header = _read(self.done_r, _DONE.size) if readable else b''
      if header:
        slot, rows, length = _DONE.unpack(header)
        return slot, rows, _read(self.done_r, length).decode() if length else ''
      if readable:  # end-of-file: every worker is gone
        for p in self.procs:
          p.wait()
      self._check_alive()

  def _check_alive(self) -> None:
    dead = [p for p in self.procs if p.poll() is not None]
    if dead:
      raise DatasetError(f'input worker process {dead[0].pid} exited with code '
                         f'{dead[0].returncode}; rerun, or decode in threads with '
                         '--config.worker_processes=False')

  def start(self, step: int, row_chunks: list[tuple[int, int]]) -> int:
    slot, self.next_slot = self.next_slot, (self.next_slot + 1) % self.depth
    self.remaining[slot] = self.aug.local_batch
    records = [_TASK.pack(slot, step, lo, hi) for lo, hi in row_chunks]
    for i in range(0, len(records), _RECORDS_PER_WRITE):  # atomic writes: whole records
      os.write(self.task_w, b''.join(records[i:i + _RECORDS_PER_WRITE]))
    return slot

  def finish(self, slot: int) -> dict:
    while self.remaining[slot]:
      done_slot, rows, error = self._get()
      if error:
        raise DatasetError(error)
      self.remaining[done_slot] -= rows
    images, labels = self.buffers.take()
    np.copyto(images, self.ring.images[slot])
    np.copyto(labels, self.ring.labels[slot])
    return {'image': images, 'label': labels}

  def close(self) -> None:
    """Stop the workers (after the tasks already queued) and wait for them."""
    try:
      for _ in self.procs:
        os.write(self.task_w, _TASK.pack(-1, 0, 0, 0))
    except OSError:  # every worker is gone already
      pass
    for p in self.procs:
      try:
        p.wait(timeout=5)
      except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    os.close(self.task_w)
    os.close(self.done_r)
