"""The launcher's --hosts path against a real sshd on 127.0.0.1: two workers
train together (two processes joined by jax.distributed, gloo collectives);
worker 1 killed with kill -9 mid-run is noticed, worker 0 is stopped, both
run again and end bit-identical to an uninterrupted run (of one process on
two devices: the same numbers); a detached job is
seen by status and logs and stopped (both workers save one step and exit
42); an unreachable host is one line naming it and ssh's error."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import xla_flags
from eval_helpers import photo_folder
from sshd_server import Sshd
from train_helpers import (ROOT, assert_params_equal, final_params, free_port, metric_rows,
                           start, tiny_args)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
  """(sshd, data folder, scratch directory, the launcher's environment)."""
  tmp = tmp_path_factory.mktemp('launch')
  server = Sshd(tmp / 'sshd')
  data = photo_folder(str(tmp / 'data'), counts=(6, 5, 5))
  env = dict(os.environ, VIT_JAX_CACHE=str(tmp / 'local'))
  yield server, data, tmp, env
  server.close()


def _launch_args(server, tmp, name, *extra):
  """The launcher's flags for the two workers, and the workers' environment
  (ssh passes none of ours)."""
  worker_env = {'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': xla_flags(1)}
  for key in ('JAX_COMPILATION_CACHE_DIR', 'JAX_COMPILATION_CACHE_MAX_SIZE',
              'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
              'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'):
    if key in os.environ:
      worker_env[key] = os.environ[key]
  return ['--hosts', f'{server.alias},{server.alias}', '--ssh-config', server.config,
          '--remote-dir', str(tmp / 'remote'), '--name', name, '--port', str(free_port()),
          '--grace-s', '20', *[f'--env={k}={v}' for k, v in worker_env.items()], *extra]


def _launcher(args, env, command=()):
  return subprocess.Popen([sys.executable, '-m', 'vit_jax.launch', *args,
                           *(['--', *command] if command else [])], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train(work, data, **overrides):
  return [sys.executable, 'train.py', *tiny_args(work, data, **overrides)]


def _trainer_pid(work, process_id, timeout=120):
  """The training process of `work`'s worker `process_id` (found in /proc)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    for pid in filter(str.isdigit, os.listdir('/proc')):
      try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
          argv = f.read().decode(errors='replace').split('\0')
      except OSError:
        continue
      if ('train.py' in argv and f'--workdir={work}' in argv
          and f'--config.process_id={process_id}' in argv):
        return int(pid)
    time.sleep(0.05)
  raise AssertionError(f'no training process {process_id} of {work}')


def test_a_worker_killed_mid_run_is_rerun_with_the_other_and_ends_bit_identical(site):
  server, data, tmp, env = site
  # the uninterrupted run: one process on two devices (the same numbers as two
  # processes of one device each)
  straight = start(tiny_args(tmp / 'straight', data), devices=2)
  killed_work = tmp / 'killed'
  # 150 ms a step: checkpoint 4 is complete while steps 5-12 are still to come
  killed = _launcher(_launch_args(server, tmp, 'killed', '--retries', '2',
                                  '--env=VIT_JAX_FAULT=slow:150'), env,
                     _train(killed_work, data))
  while not (killed_work / 'checkpoints' / '4').is_dir():
    assert killed.poll() is None, killed.communicate()
    time.sleep(0.05)
  os.kill(_trainer_pid(killed_work, 1), signal.SIGKILL)
  out, err = killed.communicate(timeout=600)
  assert killed.returncode == 0, out[-3000:] + err[-2000:]
  assert 'worker 1 (worker-host): killed by SIGKILL' in out
  assert 'stopping the other workers' in out
  assert 'running it again, attempt 2 of 3' in out and 'killed: finished on every worker' in out
  attempt2 = out[out.index('attempt 2 on 2 workers: '):].splitlines()[0]
  assert '--config.coordinator_address=127.0.0.1:' in attempt2  # ssh -G of the alias
  assert attempt2.endswith('--config.num_processes=2 --config.process_id=0')
  assert '[0] resumed from' in out
  assert '[0] goodput ' in out and ' over 2 attempts (productive steps ' in out
  s_out, s_err = straight.communicate(timeout=600)
  assert straight.returncode == 0, s_out[-3000:] + s_err[-2000:]
  assert '[0] train 12/12' in out and '[1] === attempt 2 on ' in out
  assert_params_equal(final_params(killed_work), final_params(tmp / 'straight'))
  assert metric_rows(killed_work) == metric_rows(tmp / 'straight')
  ledger = [json.loads(l) for l in (killed_work / 'goodput.jsonl').read_text().splitlines()]
  assert {r['attempt'] for r in ledger} == {1, 2}
  # one log per worker, on the worker and here, each with both attempts
  for worker in (0, 1):
    remote = (tmp / 'remote' / 'killed' / f'worker-{worker}.log').read_text()
    local = (tmp / 'local' / 'launch' / 'killed' / f'worker-{worker}.log').read_text()
    assert remote == local and remote.count('=== attempt ') == 2
  assert (tmp / 'remote' / 'killed' / 'worker-1.exit').read_text().strip() == '0'


def test_detached_job_status_logs_and_stop_saves_on_every_worker(site):
  server, data, tmp, env = site
  work = tmp / 'detached'
  args = _launch_args(server, tmp, 'detached', '--detach', '--env=VIT_JAX_FAULT=slow:250')
  out, err = _launcher(args, env, _train(work, data, total_steps=400,
                                         checkpoint_every=1000)).communicate(timeout=120)
  assert 'launched in the background' in out and 'vit-jax-launch stop detached' in out, err
  again = _launcher(args, env, _train(work, data)).communicate(timeout=120)
  assert again[1].startswith('error: a job named detached is running (launcher pid ')
  assert len(again[1].splitlines()) == 1
  deadline = time.monotonic() + 300
  while not ((work / 'metrics.jsonl').exists() and len(metric_rows(work)) >= 2):
    assert time.monotonic() < deadline
    time.sleep(0.1)
  status, _ = _launcher(['status', 'detached'], env).communicate(timeout=120)
  assert status.startswith('detached: running, attempt 1 of 1, launcher pid '), status
  assert '  worker 0: running ' in status and '  worker 1: running ' in status
  stopped, _ = _launcher(['stop', 'detached'], env).communicate(timeout=300)
  assert stopped.splitlines()[-1] == 'detached: stopped, exit code 42', stopped
  saved = [int(p.name) for p in (work / 'checkpoints').iterdir()]
  assert len(saved) == 1 and 2 <= saved[0] < 400
  for worker in (0, 1):  # each saved (the one checkpoint) and exited 42
    assert (tmp / 'remote' / 'detached' / f'worker-{worker}.exit').read_text().strip() == '42'
  logs, _ = _launcher(['logs', 'detached'], env).communicate(timeout=60)
  assert re.search(rf'\[0\] SIGTERM after step \d+: saved step {saved[0]}; exiting with 42',
                   logs)
  assert 'worker 1 (worker-host): exit code 42 (stopped, resumable)' in logs
  assert logs.rstrip().endswith('detached: stopped (exit code 42 (stopped, resumable)); the '
                                'same launch resumes it')


def test_an_unreachable_host_is_one_line_naming_it_and_the_ssh_error(site):
  server, _, tmp, env = site
  with open(server.config, 'a') as f:
    f.write(f'Host nobody-home\n  HostName 127.0.0.1\n  Port {free_port()}\n')
  proc = _launcher(['--hosts', f'{server.alias},nobody-home', '--ssh-config', server.config,
                    '--remote-dir', str(tmp / 'remote'), '--name', 'unreachable'], env, ['true'])
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and len(err.splitlines()) == 1, out + err
  line = err.strip()
  assert line.startswith('error: worker 1 (nobody-home): preparing: ssh: connect to host '
                         '127.0.0.1 port '), out + err
  assert line.endswith('Connection refused')
