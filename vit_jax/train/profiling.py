"""A JAX profiler trace of chosen training steps (`--config.profile_steps=
START,COUNT`), written where TensorBoard's profile plugin and XProf read it:
DIR/tensorboard/plugins/profile/RUN/HOST.xplane.pb (a bucket too). Process 0
profiles, or every process with `profile_all_hosts`."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import jax

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
    self._dir = str(workdir.tensorboard)  # the profiler adds plugins/profile/RUN/
    self._tracing = False

  @contextlib.contextmanager
  def step(self, step: int) -> Iterator[None]:
    if self._enabled and step == self._first:
      jax.profiler.start_trace(self._dir)
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
    if self._tracing:
      jax.profiler.stop_trace()
      self._tracing = False
