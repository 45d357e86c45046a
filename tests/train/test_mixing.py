"""Mixup (big_vision's) and CutMix (timm's) by the formula, on 4 simulated
devices: each device mixes its own rows, each row with the row before it
among them, and the compiled step gains no collective."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import xla_flags
from vit_jax.train.config_keys import Mixing
from vit_jax.train.mixing import make_mixer

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, SMOOTHING, DEVICES = 5, 0.1, 4


@pytest.fixture(scope='module')
def four_devices(tmp_path_factory):
  """tests/workers/mixing_devices.py's 256 steps of mixing (mixup 0.4, cutmix
  1.0, half the mixing steps CutMix, 80% of the steps mixing) of 12 rows on 4
  devices, and its collectives."""
  out = str(tmp_path_factory.mktemp('mixing') / 'mixing.npz')
  env = dict(os.environ, XLA_FLAGS=xla_flags(DEVICES), JAX_PLATFORMS='cpu')
  run = subprocess.run([sys.executable, os.path.join(HERE, 'workers', 'mixing_devices.py'),
                        out], capture_output=True, text=True, timeout=300, env=env)
  assert run.returncode == 0, run.stderr[-2000:]
  return json.loads(run.stdout.strip().splitlines()[-1]), dict(np.load(out))


def _smoothed(labels):
  return np.eye(CLASSES)[labels] * (1 - SMOOTHING) + SMOOTHING / CLASSES


def _row_before_on_its_device(a):
  """Each device's block of rows rolled by one: row i gets the row before it."""
  return np.roll(a.reshape((DEVICES, -1) + a.shape[1:]), 1, axis=1).reshape(a.shape)


def test_each_step_mixes_every_row_with_the_row_before_it_on_its_device(four_devices):
  result, d = four_devices
  assert result['devices'] == DEVICES
  x = d['images'].astype(np.float32)
  other = _row_before_on_its_device(x)
  labels, other_labels = d['labels'], _row_before_on_its_device(d['labels'])
  kinds = {'none': 0, 'mixup': [], 'cutmix': 0}
  for out, t in zip(d['mixed'], d['targets']):
    # one lambda per step, read off row 0's own label: the targets mix by it, row by row
    lam = (t[0, labels[0]] - SMOOTHING / CLASSES) / (1 - SMOOTHING)
    np.testing.assert_allclose(t, lam * _smoothed(labels) + (1 - lam) * _smoothed(other_labels),
                               atol=1e-6)
    if lam == 1:
      kinds['none'] += 1
      np.testing.assert_array_equal(out, x)
    elif np.all((out == x) | (out == other)):  # CutMix: one box pasted from the neighbour
      kinds['cutmix'] += 1
      pasted = np.any(out != x, axis=(0, 3))
      rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
      box = np.zeros_like(pasted)
      box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
      np.testing.assert_array_equal(out, np.where(box[None, :, :, None], other, x))
      assert lam == pytest.approx(1 - box.sum() / box.size, abs=1e-6)  # the box's own area
    else:  # Mixup: max(l, 1 - l) of the image and its neighbour
      kinds['mixup'].append(lam)
      assert lam >= 0.5
      np.testing.assert_allclose(out, lam * x + (1 - lam) * other, rtol=1e-5, atol=1e-4)
  assert 25 <= kinds['none'] <= 80 and 70 <= kinds['cutmix'] <= 140
  beta = np.random.default_rng(1).beta(0.4, 0.4, 100_000)
  assert np.mean(kinds['mixup']) == pytest.approx(np.maximum(beta, 1 - beta).mean(), abs=0.05)


def test_no_collective_mixes_and_the_step_gains_none(four_devices):
  result, _ = four_devices
  assert not any(result['mixing_collectives'].values())
  # the data-parallel step's one collective, the gradients' all-reduce, and nothing more
  assert result['step_collectives'] == dict(result['mixing_collectives'], **{'all-reduce': 1})


def test_nothing_mixes_when_both_alphas_are_zero():
  assert make_mixer(Mixing(), CLASSES, SMOOTHING) is None
  assert not Mixing(mixup=0.0, cutmix=0.0).active and Mixing(cutmix=0.5).active
