"""metrics.jsonl (one JSON object per logged step) and TensorBoard events."""
from __future__ import annotations

import json
import os
from typing import Optional

import jax


class MetricsWriter:
  """Written by process 0 only. On resume, rows past the restored step are
  dropped so that the file reads as if the run had never stopped."""

  def __init__(self, workdir: str, resume_step: Optional[int]):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [line for line in f if line.strip()]
      keep = [r for r in rows if resume_step is not None and json.loads(r)['step'] <= resume_step]
      with open(self.path, 'w') as f:
        f.writelines(keep)
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), **{k: float(v) for k, v in values.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    for k, v in values.items():
      self._tb.add_scalar(k, float(v), int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
