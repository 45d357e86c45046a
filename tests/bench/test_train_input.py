"""The training-input benchmark: fresh processes per configuration, the GIL
time per image and its ceiling, tf.data only where tensorflow is."""
import re

import numpy as np
import pytest

from vit_jax.bench import input_images, tfa_image, tfdata_reference, train_input
from vit_jax.bench import measure as bench


def test_imagenet_like_jpegs_have_imagenets_shapes():
  jpegs = input_images.imagenet_like_jpegs(12)
  from vit_jax.data.decode import Encoded
  shapes = {(Encoded(j).width, Encoded(j).height) for j in jpegs}
  assert shapes <= set(input_images.SHAPES) and len(shapes) > 1
  assert 40_000 < np.mean([len(j) for j in jpegs]) < 100_000
  assert input_images.imagenet_like_jpegs(3, seed=1) == input_images.imagenet_like_jpegs(3, seed=1)


def test_the_gil_time_per_image_is_microseconds():
  seconds = train_input.gil_seconds_per_image(images=64, reps=2)
  assert 1e-6 < seconds < 1e-3


def test_each_configuration_is_measured_in_its_own_process(capsys):
  assert train_input.run(False, image_size=32, batch_size=8, seconds=0.3, rounds=1,
                         count=16, randaug=(2, 10)) == 0
  out = capsys.readouterr().out
  assert out.startswith('16 ImageNet-like JPEGs (')
  assert ', 32 px crops, RandAugment(2, 10), batch 8,' in out.splitlines()[0]
  for name in ('vit_jax, 1 core', 'vit_jax threads, ', 'vit_jax processes, '):
    line = next(line for line in out.splitlines() if line.startswith(name))
    assert float(re.search(r'(\d+) img/s', line).group(1)) > 0
  gil = re.search(r'GIL held per image: at most ([\d.]+) us, so one process tops out near '
                  r'([\d,]+) img/s', out)
  ceiling = float(gil.group(2).replace(',', ''))
  assert abs(1e6 / float(gil.group(1)) / ceiling - 1) < 0.01  # the rounded time implies it


def test_the_tfdata_comparison_needs_tensorflow(capsys):
  if tfdata_reference.available():
    pytest.skip('tensorflow is installed here: the comparison runs (BENCHMARKS.md)')
  assert bench.main(['--mode', 'train-input', '--compare', 'tfdata']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: --compare tfdata needs tensorflow') and '\n' not in err


def test_randaug_flags_are_checked_in_one_line(capsys, tmp_path):
  assert train_input.parse_randaug_flag('2,10') == (2, 10.0)
  assert bench.main(['--mode', 'train-input', '--randaug', '2']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: --randaug: expected N,M such as 2,10") and '\n' not in err
  assert tfdata_reference.main(['--images', str(tmp_path), '--randaug', '2,10']) == 2
  assert '--big-vision PATH' in capsys.readouterr().err
  if tfdata_reference.available():
    assert train_input.run(True, randaug=(2, 10)) == 2  # big_vision's code is needed
    assert '--big-vision PATH' in capsys.readouterr().err
  with pytest.raises(ValueError, match='not a checkout of google-research/big_vision'):
    tfa_image.load_autoaugment(str(tmp_path))
