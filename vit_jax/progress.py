"""Progress of a run on process 0: tqdm's bar on a terminal; one plain line
per log interval where stdout is a file (a pod worker's log, nohup, CI), as
clu's periodic reports do, never carriage-return frames."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

import jax
from tqdm import tqdm


def _fields(fields: dict) -> str:
  return '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
                   for k, v in fields.items())


class Progress:
  """`update(images)` after each step, `log(step, **fields)` at each log
  interval, `close()` at the end; steps count from `start_step` (a resumed
  run) to `total_steps`."""

  def __init__(self, total_steps: int, desc: str, enabled: bool = True,
               stream: Optional[TextIO] = None, start_step: int = 0):
    self.total, self.desc, self.start_step = total_steps, desc, start_step
    self.enabled = enabled and jax.process_index() == 0
    self.stream = stream or sys.stdout
    self.interactive = self.enabled and self.stream.isatty()
    self.steps = self.images = 0
    self.start = time.perf_counter()
    self._mark = (self.start, 0, 0)  # time, steps, images at the last log line
    self._bar = (tqdm(total=total_steps, initial=start_step, desc=desc, unit='step',
                      file=self.stream, dynamic_ncols=True, leave=True)
                 if self.interactive else None)

  @property
  def images_per_sec(self) -> float:
    return self.images / max(time.perf_counter() - self.start, 1e-9)

  def update(self, images: int, steps: int = 1) -> None:
    self.steps += steps
    self.images += images
    if self._bar is not None:
      self._bar.set_postfix_str(f'{self.images_per_sec:.1f} img/s', refresh=False)
      self._bar.update(steps)

  def log(self, step: int, **fields) -> None:
    """The logged values: on the bar, or as one line of their own."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.set_postfix_str(f'{_fields(fields)}  {self.images_per_sec:.1f} img/s')
      return
    # rates over the interval since the last line: the first step's compile
    # weighs on the first line only
    now = time.perf_counter()
    seconds = max(now - self._mark[0], 1e-9)
    rate = (self.steps - self._mark[1]) / seconds
    images_per_sec = (self.images - self._mark[2]) / seconds
    self._mark = (now, self.steps, self.images)
    eta = tqdm.format_interval((self.total - step) / rate) if rate else '?'
    extra = f'  {_fields(fields)}' if fields else ''
    self.stream.write(f'{self.desc} {step}/{self.total}{extra}  '
                      f'{images_per_sec:.1f} img/s  ETA {eta}\n')
    self.stream.flush()

  def note(self, line: str) -> None:
    """A line of its own among the progress lines (above the bar on a terminal)."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(line, file=self.stream)
      return
    self.stream.write(line + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
