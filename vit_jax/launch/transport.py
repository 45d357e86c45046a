"""Reaching the workers: plain ssh to a list of hosts (settings from the
user's ~/.ssh/config, as MaxText and gcloud rely on), or gcloud's TPU VM ssh
and scp (`gcloud compute tpus tpu-vm ssh/scp NAME --zone=Z --worker=...`,
as Google documents them). Each returns command lines; `run` runs them."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import shlex
import shutil
import subprocess
from typing import Optional, Sequence

from vit_jax.exit_codes import USER_ERROR


class LaunchError(Exception):
  """What the launcher cannot go on from: one line, and the exit code."""

  def __init__(self, message: str, code: int = USER_ERROR):
    super().__init__(message)
    self.code = code


@dataclasses.dataclass
class Result:
  returncode: int
  stdout: str
  stderr: str

  def error_line(self) -> str:
    """ssh's or gcloud's own error: the last line of stderr that says something."""
    lines = [l.strip() for l in self.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith(('ERROR', 'ssh:', 'scp:')) or 'denied' in l
              or 'refused' in l or 'resolve' in l or 'timed out' in l]
    return (errors or lines or [f'exit code {self.returncode}'])[-1]


def run(argv: Sequence[str], timeout: Optional[float] = None) -> Result:
  try:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
  except subprocess.TimeoutExpired as e:
    return Result(255, '', f'{argv[0]}: timed out after {timeout:.0f} s {e.stderr or ""}')
  return Result(out.returncode, out.stdout, out.stderr)


def run_all(argvs: Sequence[Sequence[str]], timeout: Optional[float] = None) -> list[Result]:
  """The command lines at once; their results in order."""
  if not argvs:
    return []
  with concurrent.futures.ThreadPoolExecutor(len(argvs)) as pool:
    return list(pool.map(lambda a: run(a, timeout), argvs))


def need(tool: str, advice: str) -> None:
  if shutil.which(tool) is None:
    raise LaunchError(f'{tool} not found on PATH: {advice}')


class Hosts:
  """Workers reached by ssh, one per host (a host may be listed twice)."""
  tpu = False

  def __init__(self, hosts: Sequence[str], ssh_config: Optional[str] = None,
               connect_timeout_s: int = 20):
    need('ssh', 'install an OpenSSH client')
    self.hosts = list(hosts)
    self._config = ['-F', ssh_config] if ssh_config else []
    self._coordinator: Optional[str] = None
    self._opts = self._config + [
        '-o', 'BatchMode=yes', '-o', f'ConnectTimeout={connect_timeout_s}',
        '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4']

  def count(self) -> int:
    return len(self.hosts)

  def label(self, worker: int) -> str:
    return self.hosts[worker]

  def ssh(self, worker: int, script: str) -> list[str]:
    return ['ssh', *self._opts, self.hosts[worker], 'bash -c ' + shlex.quote(script)]

  def ssh_all(self, script: str) -> list[list[str]]:
    return [self.ssh(i, script) for i in range(self.count())]

  def copy_all(self, local: str, remote: str) -> list[list[str]]:
    """`remote`: relative to the worker's home, or absolute."""
    return [['scp', '-q', *self._opts, local, f'{host}:{remote}'] for host in self.hosts]

  def address(self, worker: int) -> str:
    """The host name ssh connects to for `worker`, after ~/.ssh/config's
    aliases (`ssh -G`): what the other workers reach it by."""
    out = run(['ssh', '-G', *self._config, self.hosts[worker]], timeout=30)
    names = [l.split(None, 1)[1] for l in out.stdout.splitlines() if l.startswith('hostname ')]
    if out.returncode or not names:
      raise LaunchError(f'worker {worker} ({self.hosts[worker]}): ssh -G: {out.error_line()}')
    return names[0].strip()

  def multihost_flags(self, worker: int, port: int) -> list[str]:
    """The first host coordinates; every worker is told where, how many, which."""
    if self._coordinator is None:
      self._coordinator = self.address(0)
    return [f'--config.coordinator_address={self._coordinator}:{port}',
            f'--config.num_processes={self.count()}', f'--config.process_id={worker}']


class TpuVm:
  """The workers of a TPU VM slice, through gcloud."""
  tpu = True

  def __init__(self, name: str, zone: str, project: Optional[str] = None):
    need('gcloud', 'install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install), '
         'then run `gcloud auth login`')
    self.name, self.zone, self.project = name, zone, project
    self._workers: Optional[int] = None

  def gcloud(self, *args: str) -> list[str]:
    return ['gcloud', 'compute', 'tpus', *args, f'--zone={self.zone}',
            *([f'--project={self.project}'] if self.project else []), '--quiet']

  def refresh(self) -> None:
    """Forget the worker count (a slice created again)."""
    self._workers = None

  def count(self) -> int:
    """The slice's workers: its network endpoints, one per VM."""
    if self._workers is None:
      out = run(self.gcloud('tpu-vm', 'describe', self.name, '--format=json'), timeout=120)
      if out.returncode:
        raise LaunchError(f'TPU {self.name} in {self.zone}: {out.error_line()}')
      self._workers = len(json.loads(out.stdout).get('networkEndpoints') or [None])
    return self._workers

  def label(self, worker: int) -> str:
    return f'{self.name} worker {worker}'

  def ssh(self, worker: int, script: str) -> list[str]:
    return self.gcloud('tpu-vm', 'ssh', self.name, f'--worker={worker}',
                       '--command=bash -c ' + shlex.quote(script))

  def ssh_all(self, script: str) -> list[list[str]]:
    return [self.gcloud('tpu-vm', 'ssh', self.name, '--worker=all',
                        '--command=bash -c ' + shlex.quote(script))]

  def copy_all(self, local: str, remote: str) -> list[list[str]]:
    return [self.gcloud('tpu-vm', 'scp', local, f'{self.name}:{remote}', '--worker=all')]

  def multihost_flags(self, worker: int, port: int) -> list[str]:
    return ['--config.coordinator_address=auto']  # JAX reads the slice from the TPU VM
