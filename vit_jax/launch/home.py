"""A job's files on the machine that launched it, under
$VIT_JAX_CACHE/launch/NAME (default ~/.cache/vit_jax/launch/NAME):
`job.json` (how to reach its workers and what they run), `state.json`
(where it is: attempt, phase, each worker), `launcher.log` (the launcher's
output, every worker's lines prefixed with its id) and `worker-I.log` (worker
I's own output, as on the worker)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional


def root() -> Path:
  return Path(os.environ.get('VIT_JAX_CACHE', Path.home() / '.cache' / 'vit_jax')) / 'launch'


class JobHome:

  def __init__(self, name: str):
    self.name = name
    self.path = root() / name

  @property
  def spec_path(self) -> Path:
    return self.path / 'job.json'

  @property
  def state_path(self) -> Path:
    return self.path / 'state.json'

  @property
  def log_path(self) -> Path:
    return self.path / 'launcher.log'

  def worker_log(self, worker: int) -> Path:
    return self.path / f'worker-{worker}.log'

  def exists(self) -> bool:
    return self.spec_path.exists()

  def spec(self) -> dict:
    return json.loads(self.spec_path.read_text())

  def write_spec(self, spec: dict) -> None:
    self.path.mkdir(parents=True, exist_ok=True)
    _write_json(self.spec_path, spec)

  def state(self) -> dict:
    try:
      return json.loads(self.state_path.read_text())
    except (OSError, ValueError):
      return {}

  def update_state(self, **fields) -> dict:
    state = {**self.state(), **fields}
    _write_json(self.state_path, state)
    return state

  def supervisor(self) -> Optional[int]:
    """The pid of the launcher process supervising the job, if it still runs."""
    pid = self.state().get('pid')
    if not pid or self.state().get('phase') in ('finished', 'failed', 'stopped'):
      return None
    try:
      os.kill(pid, 0)
    except OSError:
      return None
    try:
      command = Path(f'/proc/{pid}/cmdline').read_bytes()
    except OSError:  # no /proc: kill(0) has to do
      return pid
    return pid if b'vit' in command else None  # not a reused pid


def _write_json(path: Path, value: dict) -> None:
  tmp = path.with_suffix('.tmp')
  tmp.write_text(json.dumps(value, indent=1))
  os.replace(tmp, path)
