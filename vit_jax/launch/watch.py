"""Following one worker's attempt: its log streamed into a local copy and
onto the launcher's output (each line prefixed with the worker's id) until
it ends, then its exit code. A lost connection is opened again where the
stream stopped; a worker that stays unreachable counts as lost."""
from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from vit_jax.exit_codes import CRASH, DOES_NOT_FIT, FINISHED, RESUMABLE, USER_ERROR
from vit_jax.launch import remote

RECONNECTS = 3  # tries after a dropped connection before a worker counts as lost


def restartable(code: Optional[int]) -> bool:
  """42, a worker lost (None: it vanished or its host is unreachable) or
  killed by a signal (128 + N: the OOM killer, a host going down): running
  the same command again resumes."""
  return code is None or code == RESUMABLE or code > 128


def describe(code: Optional[int]) -> str:
  if code is None:
    return 'lost'
  if code > 128:
    try:
      return f'killed by {signal.Signals(code - 128).name}'
    except ValueError:
      return f'exit code {code}'
  meaning = {FINISHED: 'finished', CRASH: 'a crash', USER_ERROR: 'a user error',
             DOES_NOT_FIT: 'the step does not fit', RESUMABLE: 'stopped, resumable'}
  return f'exit code {code}' + (f' ({meaning[code]})' if code in meaning else '')


class Watcher(threading.Thread):
  """Puts (worker, exit code or None, detail) on `results` when the attempt
  has ended."""

  def __init__(self, worker: int, argv: Callable[[int], list[str]], offset: int,
               local_log: Path, say: Callable[[str], None], results: queue.Queue):
    super().__init__(name=f'watch-worker-{worker}', daemon=True)
    self.worker, self._argv, self._offset = worker, argv, offset
    self._local_log, self._say, self._results = local_log, say, results
    self._received = 0
    self._partial = b''

  def run(self) -> None:
    failures, detail = 0, ''
    while True:
      code, ended, detail = self._follow()
      if ended:
        self._results.put((self.worker, code, detail))
        return
      failures += 1
      if failures > RECONNECTS:
        self._results.put((self.worker, None, f'unreachable: {detail}'))
        return
      time.sleep(failures)

  def _follow(self) -> tuple[Optional[int], bool, str]:
    """One connection: (exit code, whether the attempt ended, ssh's error)."""
    proc = subprocess.Popen(self._argv(self._offset + self._received), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    reader.start()
    with self._local_log.open('ab') as log:
      for chunk in iter(lambda: proc.stdout.read1(1 << 16), b''):
        self._received += len(chunk)
        log.write(chunk)
        log.flush()
        self._lines(chunk)
    proc.wait()
    reader.join()
    text = b''.join(errors).decode(errors='replace')
    for line in text.splitlines():
      if line.startswith(remote.EXIT_MARK):
        self._lines(b'', end=True)
        value = line[len(remote.EXIT_MARK):].strip()
        return (int(value) if value.lstrip('-').isdigit() else None), True, ''
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return None, False, (lines[-1] if lines else f'exit code {proc.returncode}')

  def _lines(self, chunk: bytes, end: bool = False) -> None:
    data = self._partial + chunk
    *lines, self._partial = data.split(b'\n')
    if end and self._partial:
      lines, self._partial = lines + [self._partial], b''
    for line in lines:
      self._say(f'[{self.worker}] {line.decode(errors="replace").rstrip()}')
