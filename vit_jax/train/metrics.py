"""metrics.jsonl (one JSON object per logged step) and TensorBoard events."""
from __future__ import annotations

import json
from typing import Optional

import jax

from vit_jax import storage
from vit_jax.workdir import Workdir


class MetricsWriter:
  """Written by process 0 only. On resume, rows past the restored step are
  dropped so that the file reads as if the run had never stopped. Cloud
  storage has no appends: there the file is uploaded whole at each write
  (TensorBoard's event file too, by tensorboardX's gs:// writer)."""

  def __init__(self, workdir: Workdir, resume_step: Optional[int]):
    self.enabled = jax.process_index() == 0
    self.path = workdir.metrics
    self._rows: list[str] = []
    self._tb = None
    if not self.enabled:
      return
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if self.path.exists():
      rows = [line + '\n' for line in self.path.read_text().splitlines() if line.strip()]
      self._rows = [r for r in rows
                    if resume_step is not None and json.loads(r)['step'] <= resume_step]
      self.path.write_text(''.join(self._rows))
    from tensorboardX import SummaryWriter
    self._tb = SummaryWriter(str(workdir.tensorboard))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    row = json.dumps({'step': int(step), **{k: float(v) for k, v in values.items()}}) + '\n'
    self._rows.append(row)
    if storage.is_remote(self.path):
      self.path.write_text(''.join(self._rows))
    else:
      with self.path.open('a') as f:
        f.write(row)
    for k, v in values.items():
      self._tb.add_scalar(k, float(v), int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
