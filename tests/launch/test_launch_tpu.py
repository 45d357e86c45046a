"""The launcher's TPU path, with `gcloud` replaced by a stand-in
(fake_gcloud.py) that checks every call against Google's documented syntax
and runs the commands on local "workers": a Spot slice created as a queued
resource, the code copied to every worker, the run preempted (the slice
SUSPENDED, its VMs gone), the slice deleted and created again and the run
finished there; on an existing slice stale TPU users and locks are cleared,
a 42 is run again and a 2 is not; a wheel is installed on the workers; a
missing gcloud is one line."""
import json
import os
import subprocess
import sys
import time

import pytest

import fake_gcloud
from train_helpers import ROOT

# the command the workers run: a stand-in for train.py, which records how it
# was started and does what STUB_PLAN says for its (worker, attempt)
STUB = '''import json, os, sys, time
worker, attempt = os.environ['VIT_JAX_LAUNCH_WORKER'], os.environ['VIT_JAX_LAUNCH_ATTEMPT']
out = os.environ['STUB_OUT']
with open(os.path.join(out, 'calls.jsonl'), 'a') as f:
  f.write(json.dumps({'worker': int(worker), 'attempt': int(attempt), 'argv': sys.argv[1:],
                      'cwd': os.getcwd(), 'home': os.environ['HOME']}) + '\\n')
plan = json.loads(os.environ['STUB_PLAN']).get(f'{worker}:{attempt}', 0)
print(f'worker {worker} attempt {attempt}: {plan}', flush=True)
if plan == 'wait':
  open(os.path.join(out, f'started-{worker}'), 'w').close()
  time.sleep(600)
sys.exit(plan)
'''


@pytest.fixture
def cloud(tmp_path):
  """(the launcher's environment with the stand-in gcloud first on PATH, its
  state directory, the checkout to launch from, the stub's output)."""
  state, bin_dir, checkout, out = (tmp_path / d for d in ('cloud', 'bin', 'checkout', 'out'))
  for d in (state, bin_dir, checkout, out):
    d.mkdir()
  (bin_dir / 'gcloud').write_text(f'#!/bin/sh\nexec {sys.executable} '
                                  f'{fake_gcloud.__file__} "$@"\n')
  (bin_dir / 'gcloud').chmod(0o755)
  (checkout / 'train.py').write_text(STUB)
  (checkout / 'configs').mkdir()
  (checkout / 'configs' / 'x.py').write_text('# a config the copy brings along\n')
  env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', FAKE_GCLOUD_STATE=str(state),
             VIT_JAX_CACHE=str(tmp_path / 'local'), PYTHONPATH=ROOT)
  return env, state, checkout, out


def _launch(env, checkout, out, plan, *args):
  command = ['python3', 'train.py', '--config=configs/x.py', '--workdir=gs://b/run']
  return subprocess.Popen(
      [sys.executable, '-m', 'vit_jax.launch', '--zone=us-central2-b', '--project=p',
       '--poll-s=0.05', '--grace-s=5', f'--env=STUB_OUT={out}',
       f'--env=STUB_PLAN={json.dumps(plan)}', *args, '--', *command],
      cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _calls(state):
  return [json.loads(l) for l in (state / 'calls.jsonl').read_text().splitlines()]


def _stub_calls(out):
  return [json.loads(l) for l in (out / 'calls.jsonl').read_text().splitlines()]


def test_a_spot_slice_is_created_preempted_recreated_and_the_run_finished(cloud):
  env, state, checkout, out = cloud
  proc = _launch(env, checkout, out, {'0:1': 'wait', '1:1': 'wait'}, '--tpu=t1',
                 '--create=v4-16', '--runtime-version=tpu-ubuntu2204-base', '--spot',
                 '--retries=1')
  deadline = time.monotonic() + 120
  while not all((out / f'started-{w}').exists() for w in (0, 1)):
    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
    time.sleep(0.05)
  fake_gcloud.preempt(str(state), 't1')
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stdout + stderr
  assert not (state / 'violations.txt').exists(), (state / 'violations.txt').read_text()
  calls = [' '.join(c) for c in _calls(state)]
  where = '--zone=us-central2-b --project=p --quiet'
  create = (f'compute tpus queued-resources create t1 --node-id=t1 --accelerator-type=v4-16 '
            f'--runtime-version=tpu-ubuntu2204-base --spot {where}')
  assert calls.count(create) == 2
  assert calls.count(f'compute tpus queued-resources delete t1 --force {where}') == 1
  first, second = [i for i, c in enumerate(calls) if c == create]
  assert f'compute tpus tpu-vm describe t1 --format=json {where}' in calls[first:second]
  copies = [c for c in calls if c.startswith('compute tpus tpu-vm scp ')]
  assert len(copies) == 2 and all(c.endswith(f't1:vit-jax-launch/run/code.tar.gz '
                                             f'--worker=all {where}') for c in copies)
  ssh = [c for c in calls if c.startswith('compute tpus tpu-vm ssh t1 ')]
  assert any('--worker=all' in c for c in ssh) and any('--worker=1' in c for c in ssh)
  runs = _stub_calls(out)
  assert sorted((r['worker'], r['attempt']) for r in runs) == [(0, 1), (0, 2), (1, 1), (1, 2)]
  for r in runs:  # in the copy of the checkout (the job is named after the workdir), with
    # the TPU's multi-host flag added
    assert r['cwd'] == os.path.join(r['home'], 'vit-jax-launch', 'run', 'code')
    assert r['argv'] == ['--config=configs/x.py', '--workdir=gs://b/run',
                         '--config.coordinator_address=auto']
    assert os.path.exists(os.path.join(r['cwd'], 'configs', 'x.py'))
  assert 'creating v4-16 slice t1 in us-central2-b as a queued resource (spot)' in stdout
  assert 'queued resource t1: PROVISIONING; waiting for ACTIVE' in stdout
  assert 'worker 0 (t1 worker 0): lost: unreachable: ERROR: (gcloud.compute.tpus.tpu-vm.ssh) ' \
         'TPU t1 is PREEMPTED' in stdout
  assert 'slice t1 was lost: creating it again' in stdout
  assert '[1] worker 1 attempt 2: 0' in stdout and stdout.rstrip().endswith(
      'run: finished on every worker')


def test_stale_tpu_users_are_cleared_a_42_is_rerun_and_a_2_is_not(cloud):
  env, state, checkout, out = cloud
  cloud_state = fake_gcloud.Cloud(str(state))
  cloud_state.make_node('old', 'v4-16')
  cloud_state.save()
  worker1 = fake_gcloud.Cloud(str(state)).worker_root('old', 1)
  open(os.path.join(worker1, 'tmp', 'libtpu_lockfile'), 'w').close()
  device = os.path.join(worker1, 'dev', 'accel0')
  open(device, 'w').close()
  holder = subprocess.Popen(['sleep', '600'], stdin=open(device))  # a leftover TPU user
  try:
    proc = _launch(env, checkout, out, {'1:1': 42, '0:1': 'wait', '1:2': 2, '0:2': 'wait'},
                   '--tpu=old', '--retries=3', '--name=old-job')
    stdout, stderr = proc.communicate(timeout=300)
    assert holder.wait(timeout=10) == -9
  finally:
    holder.kill()
  assert proc.returncode == 2, stdout + stderr
  assert not (state / 'violations.txt').exists(), (state / 'violations.txt').read_text()
  assert f'killing process {holder.pid}, which holds the TPU: sleep 600' in stdout
  # (the stand-in maps the VM's /tmp into the worker's directory)
  assert f'removing the stale {worker1}/tmp/libtpu_lockfile' in stdout
  assert not os.path.exists(os.path.join(worker1, 'tmp', 'libtpu_lockfile'))
  assert 'worker 1 (old worker 1): exit code 42 (stopped, resumable)' in stdout
  assert 'stopping the other workers' in stdout
  assert 'worker 0 (old worker 0): killed by SIGTERM' in stdout
  assert 'running it again, attempt 2 of 4' in stdout
  assert 'worker 1 (old worker 1): exit code 2 (a user error)' in stdout
  assert 'old-job: exit code 2 (a user error): not restartable, not retried' in stdout
  assert not any('queued-resources' in ' '.join(c) for c in _calls(state))
  assert sorted((r['worker'], r['attempt']) for r in _stub_calls(out)) == [
      (0, 1), (0, 2), (1, 1), (1, 2)]


def test_a_missing_gcloud_says_how_to_install_it(cloud, tmp_path):
  env, _, checkout, out = cloud
  empty = tmp_path / 'empty'
  empty.mkdir()
  proc = _launch(dict(env, PATH=str(empty)), checkout, out, {}, '--tpu=t1')
  stdout, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 2 and stdout == ''
  assert stderr == ('error: gcloud not found on PATH: install the Google Cloud CLI '
                    '(https://cloud.google.com/sdk/docs/install), then run `gcloud auth login`\n')


def _wheel(directory):
  """A wheel of one module, `launch_probe`, made by hand."""
  import base64
  import hashlib
  import zipfile
  files = {'launch_probe.py': b'WHERE = "installed from the wheel"\n',
           'launch_probe-1.0.dist-info/METADATA': b'Metadata-Version: 2.1\nName: launch-probe\n'
                                                  b'Version: 1.0\n',
           'launch_probe-1.0.dist-info/WHEEL': b'Wheel-Version: 1.0\nGenerator: hand\n'
                                               b'Root-Is-Purelib: true\nTag: py3-none-any\n'}
  digest = lambda data: base64.urlsafe_b64encode(  # noqa: E731
      hashlib.sha256(data).digest()).rstrip(b'=').decode()
  record = ''.join(f'{name},sha256={digest(data)},{len(data)}\n' for name, data in files.items())
  files['launch_probe-1.0.dist-info/RECORD'] = (
      record + 'launch_probe-1.0.dist-info/RECORD,,\n').encode()
  path = os.path.join(directory, 'launch_probe-1.0-py3-none-any.whl')
  with zipfile.ZipFile(path, 'w') as z:
    for name, data in files.items():
      z.writestr(name, data)
  return path


def test_a_wheel_is_installed_on_every_worker(cloud, tmp_path):
  env, state, checkout, out = cloud
  node = fake_gcloud.Cloud(str(state))
  node.make_node('one', 'v4-8')
  node.save()
  home = os.path.join(fake_gcloud.Cloud(str(state)).worker_root('one', 0), 'home')
  subprocess.run([sys.executable, '-m', 'venv', os.path.join(home, 'venv')], check=True)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'vit_jax.launch', '--tpu=one', '--zone=z',
       f'--code={_wheel(tmp_path)}', '--python=~/venv/bin/python', '--name=probe', '--',
       '../../venv/bin/python', '-c', 'import launch_probe, os; print(launch_probe.WHERE, '
       'os.getcwd())'], cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stdout + stderr
  assert not (state / 'violations.txt').exists(), (state / 'violations.txt').read_text()
  assert 'installing launch_probe-1.0-py3-none-any.whl on every worker' in stdout
  assert f'[0] installed from the wheel {home}/vit-jax-launch/probe' in stdout
