"""vit-jax-launch: run a command on every worker of a TPU slice or a list of
hosts, watch it, and run it again after a restartable end.

    vit-jax-launch [--tpu NAME --zone Z [--project P] [--create ACCELERATOR
                    --runtime-version V [--spot | --reserved]] | --hosts H1,H2,...]
                   [--name NAME] [--retries N] [--detach] [options] -- COMMAND ARGS...
    vit-jax-launch status NAME
    vit-jax-launch logs NAME [--follow] [--worker I]
    vit-jax-launch stop NAME

Exit code: the job's (0 finished; 1, 2, 3 as the command's; 42 stopped or
out of retries, resumable); 2 for the launcher's own bad input.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import NoReturn, Optional

from vit_jax.exit_codes import FINISHED, USER_ERROR
from vit_jax.launch import command as commands
from vit_jax.launch.home import JobHome, root
from vit_jax.launch.job import Job, workers_of
from vit_jax.launch.transport import LaunchError

COORDINATOR_PORT = 8476  # JAX's own default on TPU pods
VERBS = ('status', 'logs', 'stop', '_supervise')


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:  # one line, not argparse's usage and line
    fail(f'{message} (vit-jax-launch --help)')


def _run_parser() -> argparse.ArgumentParser:
  p = _Parser(prog='vit-jax-launch', description=__doc__,
              formatter_class=argparse.RawDescriptionHelpFormatter)
  where = p.add_argument_group('where (one of --tpu and --hosts)')
  where.add_argument('--tpu', help='TPU VM slice name (gcloud compute tpus tpu-vm ...)')
  where.add_argument('--zone', help='its zone (with --tpu)')
  where.add_argument('--project', help='its project (default: gcloud config)')
  where.add_argument('--create', metavar='ACCELERATOR',
                     help='create the slice as a queued resource (e.g. v4-32), recreate it when '
                          'preempted or suspended')
  where.add_argument('--runtime-version', help='TPU VM software version, with --create '
                     '(e.g. tpu-ubuntu2204-base)')
  capacity = where.add_mutually_exclusive_group()
  capacity.add_argument('--spot', action='store_true', help='Spot capacity (with --create)')
  capacity.add_argument('--reserved', action='store_true', help='reserved capacity (--create)')
  where.add_argument('--hosts', help='comma-separated ssh hosts (~/.ssh/config applies); the '
                     'first one coordinates')
  p.add_argument('--name', help='the job\'s name (default: the workdir\'s last part)')
  p.add_argument('--retries', type=int, default=0,
                 help='run again this many times after a restartable end (42, a lost worker)')
  p.add_argument('--detach', action='store_true', help='supervise in the background; see '
                 'status, logs, stop')
  p.add_argument('--code', help="'shared' (the same directory on every worker; default with "
                 "--hosts), 'copy' (this directory copied to each; default with --tpu) or a "
                 'wheel file to install on each')
  p.add_argument('--python', default='python3', help='the workers\' Python (wheel install)')
  p.add_argument('--env', action='append', default=[], metavar='KEY=VALUE',
                 help='environment variable of the command (repeatable)')
  p.add_argument('--remote-dir', default='~/vit-jax-launch',
                 help='where workers keep jobs (REMOTE_DIR/NAME: code, logs)')
  p.add_argument('--ssh-config', help='ssh config file (default: ssh\'s own, ~/.ssh/config)')
  p.add_argument('--port', type=int, default=COORDINATOR_PORT,
                 help='the coordinator\'s port on the first host (--hosts)')
  p.add_argument('--grace-s', type=float, default=120.0,
                 help='seconds from SIGTERM to SIGKILL when stopping workers')
  p.add_argument('--poll-s', type=float, default=30.0,
                 help='seconds between queued-resource state checks')
  return p


def _spec(args: argparse.Namespace, command: list[str]) -> dict:
  if bool(args.tpu) == bool(args.hosts):
    fail('give one of --tpu NAME --zone ZONE and --hosts H1,H2,...')
  if args.tpu and not args.zone:
    fail('--tpu needs --zone')
  if args.create and not (args.tpu and args.runtime_version):
    fail('--create needs --tpu and --runtime-version (e.g. tpu-ubuntu2204-base)')
  if (args.spot or args.reserved or args.runtime_version) and not args.create:
    fail('--spot, --reserved and --runtime-version go with --create ACCELERATOR')
  if not command:
    fail('no command: write it after --, e.g. -- python train.py --config=...')
  if args.retries < 0:
    fail('--retries must be >= 0')
  env = dict(e.split('=', 1) for e in args.env if '=' in e)
  if len(env) != len(args.env):
    fail(f'--env takes KEY=VALUE: {[e for e in args.env if "=" not in e][0]!r}')
  code = args.code or ('copy' if args.tpu else 'shared')
  if code not in ('shared', 'copy'):
    if not (code.endswith('.whl') and os.path.isfile(code)):
      fail(f"--code {code!r}: 'shared', 'copy' or an existing .whl file")
    code = os.path.abspath(code)
  hosts = [h.strip() for h in (args.hosts or '').split(',') if h.strip()]
  return {'name': commands.valid_name(args.name) if args.name else commands.default_name(command),
          'command': command, 'env': env, 'code': code, 'python': args.python,
          'cwd': os.getcwd(), 'remote_dir': args.remote_dir, 'retries': args.retries,
          'grace_s': args.grace_s, 'poll_s': args.poll_s, 'port': args.port,
          'hosts': hosts, 'ssh_config': args.ssh_config and os.path.abspath(args.ssh_config),
          'tpu': args.tpu, 'zone': args.zone, 'project': args.project, 'create': args.create,
          'runtime_version': args.runtime_version,
          'capacity': 'spot' if args.spot else 'reserved' if args.reserved else None}


def launch(argv: list[str]) -> int:
  if '--' not in argv:
    if any(a in ('-h', '--help') for a in argv):
      _run_parser().print_help()
      return FINISHED
    fail('no command: write it after --, e.g. -- python train.py --config=...')
  split = argv.index('--')
  args = _run_parser().parse_args(argv[:split])
  spec = _spec(args, argv[split + 1:])
  home = JobHome(spec['name'])
  pid = home.supervisor()
  if pid:
    fail(f'a job named {spec["name"]} is running (launcher pid {pid}): see `vit-jax-launch '
         f'status {spec["name"]}`, or stop it with `vit-jax-launch stop {spec["name"]}`')
  workers_of(spec, _print)  # gcloud or ssh present
  home.write_spec(spec)
  home.update_state(pid=None, phase='starting', attempt=0, exit_code=None, workers=[])
  if not args.detach:
    return supervise(home, tee=True)
  with home.log_path.open('ab') as log:
    proc = subprocess.Popen([sys.executable, '-m', 'vit_jax.launch', '_supervise', home.name],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
  home.update_state(pid=proc.pid)
  name = home.name
  print(f'{name}: launched in the background (launcher pid {proc.pid}); follow it with '
        f'`vit-jax-launch logs {name} --follow`, `vit-jax-launch status {name}`, stop it with '
        f'`vit-jax-launch stop {name}`')
  return FINISHED


def supervise(home: JobHome, tee: bool) -> int:
  """Run the job here: `tee` also writes the output to launcher.log (in the
  background the output is that file already)."""
  log = home.log_path.open('a') if tee else None

  def say(line: str, error: bool = False) -> None:
    try:
      print(line, file=sys.stderr if error else sys.stdout, flush=True)
    except OSError:  # the terminal is gone: the job goes on, into launcher.log
      pass
    if log:
      log.write(line + '\n')
      log.flush()
  job = Job(home.spec(), home, say)
  signal.signal(signal.SIGTERM, lambda *_: job.request_stop())
  signal.signal(signal.SIGINT, lambda *_: job.request_stop())
  signal.signal(signal.SIGHUP, signal.SIG_IGN)
  return job.run()


def _print(line: str, error: bool = False) -> None:
  print(line, file=sys.stderr if error else sys.stdout, flush=True)


def _home(name: str) -> JobHome:
  home = JobHome(name)
  if not home.exists():
    known = sorted(p.name for p in root().iterdir()) if root().is_dir() else []
    fail(f'no job named {name}' + (f' (jobs: {", ".join(known)})' if known else ''))
  return home


def status(name: str) -> int:
  home = _home(name)
  state, spec = home.state(), home.spec()
  pid = home.supervisor()
  where = (f'hosts {",".join(spec["hosts"])}' if spec['hosts'] else
           f'TPU {spec["tpu"]} in {spec["zone"]}')
  code = state.get('exit_code')
  print(f'{name}: {state.get("phase", "?")}'
        + (f', attempt {state["attempt"]} of {spec["retries"] + 1}' if state.get('attempt') else '')
        + (f', exit code {code}' if code is not None else '')
        + (f', launcher pid {pid}' if pid else ', no launcher running') + f' ({where})')
  print(f'  command: {shlex.join(spec["command"])}')
  try:
    for i, text in enumerate(Job(spec, home, _print).worker_states()):
      print(f'  worker {i}: {text}')
  except LaunchError as e:
    print(f'  workers: {e}')
  print(f'  logs: {home.path}')
  return FINISHED


def logs(name: str, follow: bool, worker: Optional[int]) -> int:
  home = _home(name)
  path = home.log_path if worker is None else home.worker_log(worker)
  at = 0
  while True:
    if path.exists():
      with path.open('rb') as f:
        f.seek(at)
        data = f.read()
      at += len(data)
      sys.stdout.write(data.decode(errors='replace'))
      sys.stdout.flush()
    if not follow or home.supervisor() is None:
      return FINISHED
    time.sleep(0.5)


def stop(name: str) -> int:
  home = _home(name)
  pid = home.supervisor()
  spec = home.spec()
  if pid is None:
    job = Job(spec, home, _print)
    running = [i for i, text in enumerate(job.worker_states()) if text.startswith('running')]
    if not running:
      print(f'{name}: nothing running ({home.state().get("phase", "not started")})')
      return FINISHED
    print(f'{name}: no launcher running it; stopping worker{"s" * (len(running) > 1)} '
          f'{", ".join(map(str, running))}')
    job.stop_now(running)
    home.update_state(phase='stopped')
    return FINISHED
  print(f'{name}: stopping (launcher pid {pid}): SIGTERM to every worker, which saves')
  os.kill(pid, signal.SIGTERM)
  deadline = time.monotonic() + spec['grace_s'] + 300
  while home.supervisor() is not None and time.monotonic() < deadline:
    time.sleep(0.5)
  state = home.state()
  print(f'{name}: {state.get("phase")}, exit code {state.get("exit_code")}')
  return FINISHED


def main(argv: Optional[list[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    if argv and argv[0] in VERBS:
      verb = _Parser(prog=f'vit-jax-launch {argv[0]}')
      verb.add_argument('name')
      if argv[0] == 'logs':
        verb.add_argument('--follow', '-f', action='store_true')
        verb.add_argument('--worker', type=int)
      args = verb.parse_args(argv[1:])
      if argv[0] == 'status':
        return status(args.name)
      if argv[0] == 'logs':
        return logs(args.name, args.follow, args.worker)
      if argv[0] == 'stop':
        return stop(args.name)
      return supervise(JobHome(args.name), tee=False)
    return launch(argv)
  except LaunchError as e:
    fail(str(e), e.code)


def run() -> None:
  """The `vit-jax-launch` command."""
  sys.exit(main())
