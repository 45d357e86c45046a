"""A one-line progress bar with images/s and ETA, on the first process only."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

import jax


class Progress:
  """`update(n_images, **fields)` after each step; `close()` at the end."""

  def __init__(self, total_steps: int, desc: str, enabled: bool = True,
               stream: Optional[TextIO] = None, min_interval: float = 0.5):
    self.total, self.desc = total_steps, desc
    self.enabled = enabled and jax.process_index() == 0
    self.stream = stream or sys.stderr
    self.min_interval = min_interval
    self.steps = self.images = 0
    self.start = self._last = time.perf_counter()

  @property
  def images_per_sec(self) -> float:
    return self.images / max(time.perf_counter() - self.start, 1e-9)

  def update(self, images: int, steps: int = 1, **fields) -> None:
    self.steps += steps
    self.images += images
    now = time.perf_counter()
    if not self.enabled or (now - self._last < self.min_interval and self.steps < self.total):
      return
    self._last = now
    rate = self.steps / max(now - self.start, 1e-9)
    eta = (self.total - self.steps) / rate if rate > 0 else 0.0
    extra = ''.join(f'  {k} {v:.4g}' if isinstance(v, float) else f'  {k} {v}'
                    for k, v in fields.items())
    self.stream.write(f'\r{self.desc} {self.steps}/{self.total}{extra}  '
                      f'{self.images_per_sec:.1f} img/s  ETA {eta:.0f}s ')
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.stream.write('\n')
      self.stream.flush()
