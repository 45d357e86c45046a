"""eval.py end to end: the same exact counts on 1, 2, 4 devices and 2 hosts."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import xla_flags
from eval_helpers import photo_folder, tiny_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _eval(args, devices=1, process=None):
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
             JAX_PLATFORMS='cpu')
  cmd = [sys.executable, os.path.join(ROOT, 'eval.py'), *args]
  return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _wait(proc):
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 0, err[-2000:]
  return out, err


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('evalcli')
  # N = 13 readable images and one corrupt file, which process 1 of 2 reads
  root = photo_folder(str(tmp / 'photos'), counts=(5, 4, 4), corrupt=True)
  tiny_checkpoint(str(tmp / 'ckpt'))
  return tmp, root


def _args(tmp, root, workdir, batch):
  return [f'--config.checkpoint={tmp / "ckpt"}', f'--config.dataset=folder:{root}',
          f'--config.workdir={workdir}', f'--config.batch_size={batch}',
          '--config.write_logits=True', '--config.workers=2']


def test_same_counts_and_accuracy_on_any_device_and_host_count(setup):
  tmp, root = setup
  runs = {}
  for name, devices, batch in (('1dev', 1, 4), ('2dev', 2, 4), ('4dev', 4, 8)):
    out, _ = _wait(_eval(_args(tmp, root, tmp / name, batch), devices))
    assert 'examples 13' in out
    runs[name] = tmp / name
  port = _free_port()
  procs = [_eval(_args(tmp, root, tmp / '2proc', 4) + [
      f'--config.coordinator_address=127.0.0.1:{port}', '--config.num_processes=2',
      f'--config.process_id={i}'], devices=2) for i in range(2)]
  for p in procs:
    _wait(p)
  runs['2proc'] = tmp / '2proc'
  port = _free_port()
  strict = [_eval(_args(tmp, root, tmp / 'strict', 4) + [
      f'--config.coordinator_address=127.0.0.1:{port}', '--config.num_processes=2',
      f'--config.process_id={i}', '--config.strict=True'], devices=2) for i in range(2)]
  for p in strict:  # both hosts stop, and both name the file only host 1 read
    _, err = p.communicate(timeout=240)
    assert p.returncode == 2 and 'Traceback' not in err, err[-2000:]  # bad data: a user error
    assert 'error: cannot decode image class_1/broken.jpg' in err
  metrics = {k: json.load(open(v / 'metrics.json')) for k, v in runs.items()}
  logits = {k: np.load(v / 'logits.npz') for k, v in runs.items()}
  base = metrics['1dev']
  for name, m in metrics.items():
    assert m['num_examples'] == 13, name
    assert m['num_skipped'] == 1 and m['skipped'] == ['class_1/broken.jpg'], name
    assert (m['top1'], m['top5']) == (base['top1'], base['top5']), name
    assert m['loss'] == pytest.approx(base['loss'], rel=1e-5)
    l = logits[name]
    assert list(l['ids']) == list(logits['1dev']['ids']) and len(l['ids']) == 13
    np.testing.assert_allclose(l['logits'], logits['1dev']['logits'], atol=1e-5)
    # eval.py's numbers are the ones its logits give
    top5 = np.argsort(-l['logits'], axis=1)[:, :5]
    assert m['top1'] == pytest.approx((top5[:, 0] == l['labels']).mean(), abs=1e-12)
    assert m['top5'] == pytest.approx((top5 == l['labels'][:, None]).any(1).mean(), abs=1e-12)
  assert set(metrics['1dev']) >= {'top1', 'top5', 'loss', 'num_examples', 'model',
                                  'checkpoint', 'dataset'}


@pytest.mark.parametrize('override, message', [
    ('--config.dataset=folder:/nonexistent/imgs',
     "folder dataset '/nonexistent/imgs' does not exist"),
    ('--config.dataset=webdataset:x', "unknown kind 'webdataset'"),
    ('--config.batch_size=3', None),
    ('--config.datset=x', "unknown config key 'datset'"),
])
def test_bad_input_is_one_line(setup, override, message):
  tmp, root = setup
  args = _args(tmp, root, tmp / 'bad', 4) + [override]
  proc = _eval(args, devices=2 if override.endswith('batch_size=3') else 1)
  out, err = proc.communicate(timeout=120)
  if message is None:
    message = 'batch_size=3 is not divisible by the 2 devices'
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert proc.returncode != 0 and 'Traceback' not in err
  assert len(lines) == 1 and message in lines[0], err[-1500:]


def test_empty_folder_and_corrupt_images(setup, tmp_path):
  tmp, _ = setup
  os.makedirs(tmp_path / 'empty' / 'a')
  proc = _eval(_args(tmp, str(tmp_path / 'empty'), tmp_path / 'w', 4))
  _, err = proc.communicate(timeout=120)
  assert proc.returncode != 0 and 'no images found' in err and 'Traceback' not in err
  root = photo_folder(str(tmp_path / 'c'), counts=(2, 2), corrupt=True)
  out, err = _wait(_eval(_args(tmp, root, tmp_path / 'w2', 4)))
  assert 'class_1/broken.jpg' in err and 'skipped 1 unreadable' in out
  m = json.load(open(tmp_path / 'w2' / 'metrics.json'))
  assert m['num_examples'] == 4 and m['num_skipped'] == 1
  proc = _eval(_args(tmp, root, tmp_path / 'w3', 4) + ['--config.strict=True'])
  _, err = proc.communicate(timeout=120)
  assert proc.returncode != 0 and 'cannot decode image class_1/broken.jpg' in err
