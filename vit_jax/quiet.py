"""Native libraries that print on the C-level stdout or stderr while they
start (libtpu's search for a TPU, nvImageCodec's missing CUDA codecs), where
Python's own redirection cannot reach them."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def silenced(*fds: int) -> Iterator[None]:
  """The file descriptors `fds` (1: stdout, 2: stderr) go to /dev/null meanwhile."""
  saved = [os.dup(fd) for fd in fds]
  null = os.open(os.devnull, os.O_WRONLY)
  try:
    for fd in fds:
      os.dup2(null, fd)
    yield
  finally:
    for fd, old in zip(fds, saved):
      os.dup2(old, fd)
      os.close(old)
    os.close(null)
