"""A JAX profiler trace of chosen training steps (`--config.profile_steps=
START,COUNT`), written where TensorBoard's profile plugin and XProf read it:
DIR/tensorboard/plugins/profile/RUN/HOST.xplane.pb (a bucket too). Process 0
profiles, or every process with `profile_all_hosts`. For a bucket workdir
the profiler writes to a local directory, and the files are uploaded with
the rest of the run's files (gcsfs, under the machine's credentials) rather
than by the profiler's own storage client."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Iterator, Optional

import jax

from vit_jax import storage
from vit_jax.workdir import Workdir


def parse_steps(text: str) -> Optional[tuple[int, int]]:
  """'START,COUNT' -> (START, COUNT); '' -> None."""
  if not text:
    return None
  try:
    start, count = (int(x) for x in str(text).split(','))
  except ValueError:
    raise ValueError(f'profile_steps={text!r}: write START,COUNT (e.g. 10,5)') from None
  if start < 1 or count < 1:
    raise ValueError(f'profile_steps={text!r}: START and COUNT must be >= 1')
  return start, count


class StepProfiler:
  """`step(n)` around the dispatch of each step: the trace starts with the
  first chosen step, each traced step is annotated as one (the profile
  plugin's step view); `finish(n, state)` after it stops the trace once the
  last chosen step has run."""

  def __init__(self, steps: Optional[tuple[int, int]], all_hosts: bool, workdir: Workdir):
    self._first, self._last = (steps[0], steps[0] + steps[1] - 1) if steps else (0, -1)
    self._enabled = steps is not None and (all_hosts or jax.process_index() == 0)
    self._workdir = workdir
    self._local: Optional[str] = None  # where the profiler writes, for a bucket workdir
    self._tracing = False

  @contextlib.contextmanager
  def step(self, step: int) -> Iterator[None]:
    if self._enabled and step == self._first:
      log_dir = str(self._workdir.tensorboard)  # the profiler adds plugins/profile/RUN/
      if storage.is_remote(log_dir):
        self._local = log_dir = tempfile.mkdtemp(prefix='vit_jax_profile_')
      jax.profiler.start_trace(log_dir)
      self._tracing = True
    if not self._tracing:
      yield
      return
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      yield

  def finish(self, step: int, state: Any) -> bool:
    """True when this stopped the trace (and wrote it)."""
    if not (self._tracing and step >= self._last):
      return False
    jax.block_until_ready(state)
    self.close()
    return True

  def close(self) -> None:
    if not self._tracing:
      return
    jax.profiler.stop_trace()
    self._tracing = False
    if self._local is not None:
      local = os.path.join(self._local, 'plugins', 'profile')
      for directory, _, names in os.walk(local):
        for name in names:
          target = self._workdir.profiles / os.path.relpath(os.path.join(directory, name), local)
          target.parent.mkdir(parents=True, exist_ok=True)
          with open(os.path.join(directory, name), 'rb') as f:
            target.write_bytes(f.read())
      shutil.rmtree(self._local)
