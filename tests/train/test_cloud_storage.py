"""A gs:// workdir against a local storage emulator: killed with kill -9 and
resumed, the run ends bit-identical to the same run on a local disk, with
config.json, metrics.jsonl, goodput.jsonl, TensorBoard events, a profile
and the compilation cache (the restart loads its step from there) in the
bucket and nothing written locally; convert and eval read the bucket workdir; two processes
write one checkpoint set."""
import json
import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
from etils import epath

from eval_helpers import photo_folder
from gcs_emulator import BUCKET, gcs  # noqa: F401 -- the fixture
from vit_jax.cli.convert import convert
from train_helpers import (ROOT, assert_params_equal, final_params, free_port, metric_rows, run,
                           start, tiny_args)

STEPS = dict(total_steps=8, checkpoint_every=4)


def _args(workdir, data, **overrides):
  args = tiny_args(workdir, data, **STEPS, **overrides)
  return ['--config=quickstart', *args[1:]]  # a recipe by name: runs from any directory


def _scalars(event_file: epath.Path, tag: str) -> list[float]:
  """The `tag` values of a TensorBoard event file (TFRecord framing)."""
  from tensorboardX.proto.event_pb2 import Event
  data, values, at = event_file.read_bytes(), [], 0
  while at < len(data):
    length, = struct.unpack('<Q', data[at:at + 8])
    event = Event.FromString(data[at + 12:at + 12 + length])
    values += [v.simple_value for v in event.summary.value if v.tag == tag]
    at += 12 + length + 4
  return values


@pytest.fixture(scope='module')
def local_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('cloud')
  data = photo_folder(str(tmp / 'data'), counts=(6, 5, 5))
  run(_args(tmp / 'local', data))
  return tmp, data


def test_a_bucket_run_killed_and_resumed_ends_as_the_local_run(gcs, local_run):  # noqa: F811
  tmp, data = local_run
  workdir = f'gs://{BUCKET}/b16'
  elsewhere = tmp / 'elsewhere'
  elsewhere.mkdir()
  own_cache = {'JAX_COMPILATION_CACHE_DIR': None}  # the workdir's, not the test suite's
  out, _ = run(_args(workdir, data), env={**gcs, **own_cache, 'VIT_JAX_FAULT': 'step:6'},
               expect=-signal.SIGKILL, cwd=elsewhere)
  assert f'(cached in {workdir}/xla_cache)' in out
  out, _ = run(_args(workdir, data) + ['--config.profile_steps=5,2'], env={**gcs, **own_cache},
               cwd=elsewhere)
  assert f'resumed from {workdir} at step 4' in out
  assert f'training step loaded from the compilation cache {workdir}/xla_cache' in out
  assert f'profile of steps 5-6 written to {workdir}/tensorboard/plugins/profile' in out
  assert os.listdir(elsewhere) == []  # no ./gs:/... folder, nothing local
  bucket = epath.Path(workdir)
  assert sorted(p.name for p in (bucket / 'checkpoints').iterdir()) == ['4', '8']
  assert json.loads((bucket / 'config.json').read_text())['total_steps'] == 8
  ledger = [json.loads(l) for l in (bucket / 'goodput.jsonl').read_text().splitlines()]
  assert [r['steps'] for r in ledger if r['phase'] == 'recomputed'] == [0, 1]  # step 5 again
  assert_params_equal(final_params(workdir), final_params(tmp / 'local'))
  rows = metric_rows(workdir)
  assert rows == metric_rows(tmp / 'local') and [r['step'] for r in rows] == list(range(1, 9))
  # TensorBoard: one event file per process start. The killed one holds what
  # its writer thread had uploaded (a prefix of steps 1-5), the resumed one
  # steps 5-8, all of them written when it closed
  profile = list((bucket / 'tensorboard' / 'plugins' / 'profile').glob('*/*.xplane.pb'))
  assert len(profile) == 1 and profile[0].stat().length > 0
  events = sorted(p for p in (bucket / 'tensorboard').iterdir()
                  if p.name.startswith('events.out.tfevents'))
  assert len(events) == 2
  losses = [r['loss'] for r in rows]
  first, second = (_scalars(e, 'loss') for e in events)
  assert len(first) <= 5 and first == pytest.approx(losses[:len(first)], rel=1e-6)
  assert second == pytest.approx(losses[4:], rel=1e-6)


def test_convert_and_eval_read_the_bucket_workdir(gcs, local_run):  # noqa: F811
  tmp, data = local_run
  workdir = f'gs://{BUCKET}/b16'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  converted = f'gs://{BUCKET}/b16.safetensors'
  out = subprocess.run([sys.executable, '-m', 'convert', workdir, converted], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith(f'wrote {converted} (safetensors')
  assert_params_equal(final_params(converted), final_params(tmp / 'local'))
  orbax_dir = f'gs://{BUCKET}/b16.orbax'  # a directory format, written in place
  for overwrite in (False, True):
    convert(converted, orbax_dir, None, {}, overwrite=overwrite)
  assert_params_equal(final_params(orbax_dir), final_params(tmp / 'local'))
  evaluated = f'gs://{BUCKET}/b16_eval'
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'eval.py'), '--config=configs/eval.py',
                        f'--config.checkpoint={workdir}', f'--config.dataset=folder:{data}',
                        f'--config.workdir={evaluated}', '--config.batch_size=4',
                        '--config.workers=2', '--config.write_logits=True'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  metrics = json.loads((epath.Path(evaluated) / 'metrics.json').read_text())
  assert metrics['num_examples'] == 16 and metrics['checkpoint'] == workdir
  with (epath.Path(evaluated) / 'logits.npz').open('rb') as f:
    assert np.load(f)['logits'].shape == (16, 3)


def test_two_processes_write_one_checkpoint_set(gcs, local_run):  # noqa: F811
  tmp, data = local_run
  workdir = f'gs://{BUCKET}/two'
  port = free_port()
  procs = [start(_args(workdir, data, coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                       process_id=i), devices=1, env=gcs, cwd=tmp) for i in range(2)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  bucket = epath.Path(workdir)
  assert sorted(p.name for p in bucket.iterdir()) == [
      'checkpoints', 'config.json', 'goodput.jsonl', 'metrics.jsonl', 'tensorboard']
  assert sorted(p.name for p in (bucket / 'checkpoints').iterdir()) == ['4', '8']
  assert len(list((bucket / 'tensorboard').iterdir())) == 1
  rows, local = metric_rows(workdir), metric_rows(tmp / 'local')
  assert [r['step'] for r in rows] == list(range(1, 9))
  assert [r['loss'] for r in rows] == pytest.approx([r['loss'] for r in local], rel=1e-5)
