"""Where a run's wall time goes, over every attempt (a kill, a preemption and
the restart that follows are one run): DIR/goodput.jsonl holds one row per
phase per attempt, `{"attempt", "phase", "seconds", "steps"}`, and goodput is
the fraction of all of it spent in productive steps (MaxText's goodput).

Phases: `startup` (from the process's start: imports, joining the other
hosts, building the program, opening the data), `restore` (`steps`: the step
restored), `compile` (the training step), `steps` (`steps`: new steps; the
time the loop spends dispatching them and waiting for the devices),
`input_wait` (the loop waiting for a batch), `checkpoint` (saves, and
waiting for the last one), `eval`, `recomputed` (`steps`: steps an earlier
attempt had already run past the checkpoint this one restored).

Time is booked in sequence: `book(phase)` gives everything since the last
booking to `phase`, so the rows add up to the attempt's wall time. The file
is rewritten (on Cloud Storage uploaded whole) at log and checkpoint steps,
so after a kill -9 it holds the attempt up to its last log step. Process 0
writes it.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

from etils import epath

from vit_jax import storage

_IMPORTED = time.time()
PHASES = ('startup', 'restore', 'compile', 'steps', 'input_wait', 'checkpoint', 'eval',
          'recomputed')


def process_start_time() -> float:
  """When this process started, on the `time.time()` clock (Linux's
  /proc/self/stat; elsewhere the time of this module's import)."""
  try:
    with open('/proc/self/stat') as f:
      ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith('btime '))
    return boot + ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError, StopIteration):
    return _IMPORTED


def reached_step(rows: list[dict]) -> int:
  """The furthest step an attempt of `rows` got to (its restored step plus the
  steps it ran)."""
  reached: dict[int, int] = {}
  for row in rows:
    if row['phase'] in ('restore', 'recomputed', 'steps'):
      reached[row['attempt']] = reached.get(row['attempt'], 0) + int(row['steps'])
  return max(reached.values(), default=0)


def goodput(rows: list[dict]) -> float:
  total = sum(r['seconds'] for r in rows)
  return sum(r['seconds'] for r in rows if r['phase'] == 'steps') / total if total else 0.0


class Ledger:
  """One attempt's phases, after the attempts already in `path`."""

  def __init__(self, path: epath.Path, enabled: bool = True,
               clock: Callable[[], float] = time.time, started: Optional[float] = None):
    self.path, self.enabled, self._clock = path, enabled, clock
    self.previous: list[dict] = []
    if enabled and path.exists():
      self.previous = [json.loads(line) for line in path.read_text().splitlines()
                       if line.strip()]
    self.attempt = max((r['attempt'] for r in self.previous), default=0) + 1
    self.reached_before = reached_step(self.previous)
    self._seconds = dict.fromkeys(PHASES, 0.0)
    self._steps = dict.fromkeys(PHASES, 0)
    self._mark = process_start_time() if started is None else started

  def book(self, phase: str, steps: int = 0) -> None:
    """Everything since the last booking goes to `phase`."""
    now = self._clock()
    self._seconds[phase] += max(now - self._mark, 0.0)
    self._steps[phase] += steps
    self._mark = now

  def book_step(self, step: int, count: int = 1) -> None:
    """The loop's time for `step`: recomputed if an earlier attempt got past it."""
    self.book('recomputed' if step <= self.reached_before else 'steps', count)

  def rows(self) -> list[dict]:
    """Every attempt's rows, this one's as booked so far."""
    return self.previous + [
        {'attempt': self.attempt, 'phase': p, 'seconds': round(self._seconds[p], 3),
         'steps': self._steps[p]} for p in PHASES]

  def flush(self) -> None:
    if not self.enabled:
      return
    text = ''.join(json.dumps(row) + '\n' for row in self.rows())
    self.path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_file(self.path, lambda f: f.write(text.encode()))

  def summary(self) -> str:
    """The line the end of a run prints: goodput over all attempts and where
    the rest went."""
    rows = self.rows()
    total = sum(r['seconds'] for r in rows)
    by_phase = {p: sum(r['seconds'] for r in rows if r['phase'] == p) for p in PHASES}
    recomputed = sum(r['steps'] for r in rows if r['phase'] == 'recomputed')
    parts = [f'{p} {by_phase[p]:.1f} s' + (f' ({recomputed} steps)' if p == 'recomputed' else '')
             for p in PHASES
             if p != 'steps' and (by_phase[p] >= 0.05 or p == 'recomputed' and recomputed)]
    attempts = self.attempt
    return (f'goodput {100 * goodput(rows):.1f}% of {total:.1f} s over {attempts} '
            f'attempt{"s" * (attempts > 1)} (productive steps {by_phase["steps"]:.1f} s; '
            f'{", ".join(parts) or "nothing else"})')
