"""The training input: a pure function of (seed, step), whatever the host count."""
import numpy as np
import pytest

from vit_jax.data.sources import open_source
from vit_jax.data.train_pipeline import example_index, inception_crop_box, train_batches
from eval_helpers import photo_folder


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  return open_source('folder:' + photo_folder(str(tmp_path_factory.mktemp('tp') / 'd'),
                                              counts=(4, 3, 3)))


def _batches(src, **kw):
  args = dict(seed=3, start_step=0, total_steps=4, batch_size=6, image_size=16, workers=2)
  args.update(kw)
  return list(train_batches(src, **args))


def test_same_seed_same_batches_and_a_resume_continues_them(source):
  a, b = _batches(source), _batches(source)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  resumed = _batches(source, start_step=2)
  assert len(resumed) == 2
  for x, y in zip(resumed, a[2:]):
    np.testing.assert_array_equal(x['image'], y['image'])
  other = _batches(source, seed=4)
  assert any((x['image'] != y['image']).any() for x, y in zip(a, other))


def test_hosts_split_the_same_global_batch(source):
  whole = _batches(source)
  parts = [_batches(source, process_index=p, process_count=2) for p in range(2)]
  for step, batch in enumerate(whole):
    joined = np.concatenate([parts[0][step]['image'], parts[1][step]['image']])
    np.testing.assert_array_equal(joined, batch['image'])
    assert parts[0][step]['image'].shape == (3, 16, 16, 3)


def test_every_epoch_is_a_permutation():
  n, batch = 10, 4
  seen = [example_index(0, s, r, batch, n) for s in range(5) for r in range(batch)]
  assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
  assert seen[:10] != seen[10:20]


def test_inception_crop_boxes_respect_area_and_ratio():
  rng = np.random.default_rng(0)
  for _ in range(200):
    l, t, r, b = inception_crop_box(rng, 120, 80, (0.3, 1.0))
    w, h = r - l, b - t
    assert 0 <= l < r <= 120 and 0 <= t < b <= 80
    assert 0.3 * 9600 * 0.9 <= w * h <= 9600
  # no random box fits: the largest central crop within the ratio range
  assert inception_crop_box(rng, 400, 10, (0.99, 1.0)) == (193, 0, 206, 10)
