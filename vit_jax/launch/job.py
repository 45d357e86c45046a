"""A launched job, attempt after attempt: the code made present on every
worker, stale processes and TPU locks cleared, the command started detached
on each worker (with its multi-host flags), the workers watched until they
end or the first one fails (the others are then stopped: SIGTERM, SIGKILL
after a grace period), and the same command run again after a restartable
end (42, a lost worker; a lost slice is created again first) while retries
last."""
from __future__ import annotations

import os
import queue
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from typing import Callable, Optional

from vit_jax.exit_codes import FINISHED, RESUMABLE, USER_ERROR
from vit_jax.launch import command as commands
from vit_jax.launch import remote
from vit_jax.launch.home import JobHome
from vit_jax.launch.queued import QueuedSlice
from vit_jax.launch.transport import Hosts, LaunchError, TpuVm, run_all
from vit_jax.launch.watch import Watcher, describe, restartable

UNREACHABLE_WAIT_S = 30  # before an attempt whose workers could not be prepared is tried again


def workers_of(spec: dict, say: Callable[[str], None]):
  """(the workers' transport, the queued slice or None) of a job spec."""
  if spec.get('hosts'):
    return Hosts(spec['hosts'], spec.get('ssh_config')), None
  tpu = TpuVm(spec['tpu'], spec['zone'], spec.get('project'))
  if not spec.get('create'):
    return tpu, None
  return tpu, QueuedSlice(tpu, spec['create'], spec['runtime_version'], spec.get('capacity'),
                          spec.get('poll_s', 30.0), say)


class Job:
  """`run()` -> the job's exit code; `request_stop()` from a signal handler."""

  def __init__(self, spec: dict, home: JobHome, say: Callable[..., None]):
    self.spec, self.home, self._say_raw = spec, home, say
    self._lock = threading.Lock()
    self.workers, self.queued = workers_of(spec, self.say)
    self.job = remote.job_dir(spec['remote_dir'], spec['name'])
    self.stops_requested = 0

  def say(self, line: str, error: bool = False) -> None:
    with self._lock:
      self._say_raw(line, error)

  def request_stop(self) -> None:
    self.stops_requested += 1

  # --- the attempts ---

  def run(self) -> int:
    self.home.update_state(pid=os.getpid(), phase='starting', attempt=0, exit_code=None)
    try:
      code = self._attempts()
    except LaunchError as e:
      self.say(f'error: {e}', error=True)
      code = e.code
    phase = ('finished' if code == FINISHED else
             'stopped' if self.stops_requested or code == RESUMABLE else 'failed')
    self.home.update_state(phase=phase, exit_code=code)
    return code

  def _attempts(self) -> int:
    fresh = True
    if self.queued is not None:
      self.queued.ensure()
    retries, attempt = self.spec['retries'], 0
    while True:
      attempt += 1
      code = self._one_attempt(attempt, fresh)
      fresh = False
      if code == FINISHED:
        self.say(f'{self.spec["name"]}: finished on every worker')
        return FINISHED
      if self.stops_requested:
        self.say(f'{self.spec["name"]}: stopped ({describe(code)}); the same launch resumes it')
        return RESUMABLE
      if not restartable(code):
        self.say(f'{self.spec["name"]}: {describe(code)}: not restartable, not retried')
        return code
      if attempt > retries:
        self.say(f'{self.spec["name"]}: {describe(code)}; no retries left '
                 f'(--retries {retries}): the same launch resumes it')
        return RESUMABLE
      if self.queued is not None and self.queued.lost():
        self.say(f'slice {self.spec["tpu"]} was lost: creating it again')
        self.queued.ensure()
        fresh = True
      self.say(f'{self.spec["name"]}: {describe(code)}: running it again, attempt {attempt + 1} '
               f'of {retries + 1}')

  def _one_attempt(self, attempt: int, fresh: bool) -> Optional[int]:
    self.home.update_state(phase='preparing', attempt=attempt)
    try:
      if fresh:
        self._ship_code()
      self._on_all(remote.prepare(self.job, self._cwd(), self.workers.tpu), 'preparing')
      if self.stops_requested:  # asked to stop before anything started
        return None
      offsets = self._start(attempt)
    except LaunchError as e:
      if attempt == 1 or e.code == USER_ERROR:  # at the start: bad hosts, names, paths
        raise LaunchError(str(e), USER_ERROR) from None
      self.say(f'error: {e}; trying again in {UNREACHABLE_WAIT_S} s')
      time.sleep(UNREACHABLE_WAIT_S)
      return None
    self.home.update_state(phase='running')
    return self._watch(offsets)

  # --- the code on every worker ---

  def _cwd(self) -> str:
    code = self.spec['code']
    if code == 'shared':
      return remote.path(self.spec['cwd'])
    return f'{self.job}/code' if code == 'copy' else self.job

  def _remote_file(self, name: str) -> str:
    """scp's destination for JOB/name: relative to the worker's home, or absolute."""
    base = self.spec['remote_dir'].rstrip('/')
    base = base[2:] if base.startswith('~/') else '' if base == '~' else base
    return '/'.join(p for p in (base, self.spec['name'], name) if p)

  def _ship_code(self) -> None:
    code = self.spec['code']
    if code == 'shared':
      return
    self._on_all(remote.make_dir(self.job), 'creating the job directory')
    if code == 'copy':
      with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, 'code.tar.gz')
        count = pack(self.spec['cwd'], archive)
        self.say(f'copying {count} files of {self.spec["cwd"]} to every worker '
                 f'({os.path.getsize(archive) / 1e6:.1f} MB)')
        self._on_all_argv(self.workers.copy_all(archive, self._remote_file('code.tar.gz')),
                          'copying the code')
      self._on_all(remote.unpack(self.job, 'code.tar.gz'), 'unpacking the code')
    else:
      wheel = os.path.basename(code)
      self.say(f'installing {wheel} on every worker')
      self._on_all_argv(self.workers.copy_all(code, self._remote_file(wheel)), 'copying the wheel')
      self._on_all(remote.install(self.job, wheel, self.spec['python']), 'installing the wheel')

  def _on_all(self, script: str, what: str) -> None:
    self._on_all_argv(self.workers.ssh_all(script), what)

  def _on_all_argv(self, argvs: list, what: str) -> None:
    results = run_all(argvs, timeout=1800)
    for i, r in enumerate(results):
      for line in r.stdout.splitlines():
        self.say(line)
      if r.returncode:
        who = (f'TPU {self.spec["tpu"]}' if self.workers.tpu and len(results) == 1  # --worker=all
               else f'worker {i} ({self.workers.label(i)})')
        raise LaunchError(f'{who}: {what}: {r.error_line()}',
                          USER_ERROR if r.returncode != 255 else RESUMABLE)

  # --- starting, watching, stopping ---

  def _start(self, attempt: int) -> list[int]:
    n, argvs = self.workers.count(), []
    for i in range(n):
      line = commands.with_flags(self.spec['command'],
                                 self.workers.multihost_flags(i, self.spec['port']))
      env = {**self.spec['env'], 'VIT_JAX_LAUNCH_NAME': self.spec['name'],
             'VIT_JAX_LAUNCH_WORKER': str(i), 'VIT_JAX_LAUNCH_ATTEMPT': str(attempt)}
      argvs.append(self.workers.ssh(i, remote.start(self.job, i, attempt, self._cwd(), env,
                                                    line)))
      if i == 0:
        self.say(f'attempt {attempt} on {n} worker{"s" * (n > 1)}: {shlex.join(line)}')
    results = run_all(argvs, timeout=300)
    for i, r in enumerate(results):
      if r.returncode:
        raise LaunchError(f'worker {i} ({self.workers.label(i)}): starting: {r.error_line()}',
                          RESUMABLE)
    return [int(r.stdout.split()[0]) for r in results]

  def _watch(self, offsets: list[int]) -> Optional[int]:
    """The attempt's outcome: 0, or the first worker's failure."""
    results: queue.Queue = queue.Queue()
    for i, offset in enumerate(offsets):
      Watcher(i, lambda at, i=i: self.workers.ssh(i, remote.watch(self.job, i, at)), offset,
              self.home.worker_log(i), self.say, results).start()
    states = ['running'] * len(offsets)
    self.home.update_state(workers=states)
    outcome, stopping, handled_stops = FINISHED, None, 0
    while 'running' in states:
      if self.stops_requested > handled_stops:
        handled_stops = self.stops_requested
        grace = 0 if handled_stops > 1 else self.spec['grace_s']  # asked twice: at once
        self.say('stopping every worker: ' + (f'SIGTERM, SIGKILL after {grace:g} s' if grace
                                              else 'SIGKILL'))
        stopping = self._stop([i for i, s in enumerate(states) if s == 'running'], grace)
      try:
        worker, code, detail = results.get(timeout=0.5)
      except queue.Empty:
        continue
      states[worker] = describe(code)
      self.home.update_state(workers=states)
      if code == FINISHED:
        continue
      self.say(f'worker {worker} ({self.workers.label(worker)}): {describe(code)}'
               + (f': {detail}' if detail else ''))
      if outcome == FINISHED:
        outcome = code
        if stopping is None and 'running' in states:
          self.say('stopping the other workers')
          stopping = self._stop([i for i, s in enumerate(states) if s == 'running'],
                                self.spec['grace_s'])
    if stopping is not None:
      stopping.join()
    return outcome

  def _stop(self, workers: list[int], grace_s: float) -> threading.Thread:
    """SIGTERM (SIGKILL after `grace_s`) to `workers`, in the background."""
    argvs = [self.workers.ssh(i, remote.stop(self.job, i, grace_s)) for i in workers]

    def stop():
      for r in run_all(argvs, timeout=grace_s + 120):
        for line in r.stdout.splitlines():
          self.say(line)
    thread = threading.Thread(target=stop, name='stop-workers', daemon=True)
    thread.start()
    return thread

  def stop_now(self, workers: list[int]) -> None:
    """Stop `workers` without a launcher running the job (it died)."""
    argvs = [self.workers.ssh(i, remote.stop(self.job, i, self.spec['grace_s'])) for i in workers]
    for i, r in zip(workers, run_all(argvs, timeout=self.spec['grace_s'] + 120)):
      if r.returncode:
        self.say(f'worker {i} ({self.workers.label(i)}): {r.error_line()}')

  def worker_states(self) -> list[str]:
    """Each worker's attempt, asked on the worker: running, exited CODE, ..."""
    argvs = [self.workers.ssh(i, remote.status(self.job, i)) for i in range(self.workers.count())]
    return [r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else
            f'unreachable: {r.error_line()}' for r in run_all(argvs, timeout=120)]


def pack(directory: str, archive: str) -> int:
  """A checkout's files (git's tracked and untracked-but-not-ignored files in
  a git work tree; else all but .git and caches) as a .tar.gz; their count."""
  try:
    listed = subprocess.run(['git', '-C', directory, 'ls-files', '-z', '--cached', '--others',
                             '--exclude-standard'], capture_output=True, check=True).stdout
    files = [f for f in listed.decode().split('\0') if f]
  except (OSError, subprocess.CalledProcessError):  # not a git work tree
    files = []
    for root, dirs, names in os.walk(directory):
      dirs[:] = [d for d in dirs if d not in ('.git', '__pycache__')]
      files += [os.path.relpath(os.path.join(root, f), directory) for f in names
                if not f.endswith('.pyc')]
  files = [f for f in files if os.path.isfile(os.path.join(directory, f))]
  with tarfile.open(archive, 'w:gz') as tar:
    for f in files:
      tar.add(os.path.join(directory, f), arcname=f)
  return len(files)
