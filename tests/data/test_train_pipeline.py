"""The training input: a pure function of (seed, step), whatever the host
count, the worker count, or whether the workers are threads or processes."""
import os

import numpy as np
import pytest

from vit_jax.data.randaugment import RandAugment
from vit_jax.data.sources import DatasetError, open_source
from vit_jax.data.train_pipeline import (RANDAUG_STREAM, default_workers, example_index,
                                         row_draws, train_batches)
from eval_helpers import photo_folder


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  return open_source('folder:' + photo_folder(str(tmp_path_factory.mktemp('tp') / 'd'),
                                              counts=(4, 3, 3)))


def _batches(src, **kw):
  args = dict(seed=3, start_step=0, total_steps=4, batch_size=6, image_size=16, workers=2)
  args.update(kw)
  return list(train_batches(src, **args))


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])


def test_same_seed_same_batches_and_a_resume_continues_them(source):
  a = _batches(source)
  _assert_same(a, _batches(source))
  resumed = _batches(source, start_step=2)
  _assert_same(resumed, a[2:])
  other = _batches(source, seed=4)
  assert any((x['image'] != y['image']).any() for x, y in zip(a, other))
  assert a[0]['image'].dtype == np.uint8 and a[0]['image'].shape == (6, 16, 16, 3)
  assert a[0]['label'].dtype == np.int32 and a[0]['label'].shape == (6,)


def test_any_worker_count_threads_or_processes_give_the_same_batches(source):
  threads = _batches(source, workers=1, total_steps=6)
  for workers in (2, 3, 7):
    _assert_same(_batches(source, workers=workers, total_steps=6), threads)
  _assert_same(_batches(source, workers=3, processes=True, total_steps=6), threads)


def test_hosts_split_the_same_global_batch(source):
  whole = _batches(source)
  for processes in (False, True):
    parts = [_batches(source, process_index=p, process_count=2, processes=processes)
             for p in range(2)]
    for step, batch in enumerate(whole):
      joined = {k: np.concatenate([parts[0][step][k], parts[1][step][k]]) for k in batch}
      _assert_same([joined], [batch])
      assert parts[0][step]['image'].shape == (3, 16, 16, 3)


def test_randaugment_follows_the_crop_and_batches_stay_a_function_of_seed_and_step(source):
  plain = _batches(source, total_steps=3)
  augmented = _batches(source, total_steps=3, randaug=(2, 10))
  policy = RandAugment(2, 10)
  for step in range(3):  # each row's crop, through RandAugment with that row's own choices
    choices = row_draws(3, step, 0, 6, policy.draws, RANDAUG_STREAM)
    for row in range(6):
      np.testing.assert_array_equal(augmented[step]['image'][row],
                                    policy.apply(plain[step]['image'][row], choices[row]))
  assert np.mean(augmented[0]['image'] != plain[0]['image']) > 0.5
  _assert_same(_batches(source, total_steps=3, randaug=(2, 10), workers=1), augmented)
  _assert_same(_batches(source, total_steps=3, randaug=(2, 10), processes=True), augmented)
  _assert_same(_batches(source, start_step=1, total_steps=3, randaug=(2, 10)), augmented[1:])
  with pytest.raises(ValueError, match=r'^randaug must be \(N, M\)'):
    _batches(source, randaug=(2,))


def test_every_epoch_is_a_permutation():
  n, batch = 10, 4
  seen = [example_index(0, s, r, batch, n) for s in range(5) for r in range(batch)]
  assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
  assert seen[:10] != seen[10:20]


def test_a_rows_draws_do_not_depend_on_which_rows_are_drawn_with_it():
  whole = row_draws(5, 11, 0, 40)
  np.testing.assert_array_equal(row_draws(5, 11, 13, 9), whole[13:22])
  np.testing.assert_array_equal(row_draws(5, 11, 39, 1), whole[39:])
  assert whole.min() >= 0 and whole.max() < 1 and abs(whole.mean() - 0.5) < 0.05
  assert not np.array_equal(row_draws(5, 12, 0, 40), whole)
  assert not np.array_equal(row_draws(6, 11, 0, 40), whole)


def test_workers_default_to_the_cores_this_process_may_use():
  assert default_workers() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize('processes', [False, True])
def test_an_image_nothing_decodes_stops_with_its_id_and_source(tmp_path, processes):
  root = photo_folder(str(tmp_path / 'd'), counts=(2, 2), corrupt=True)
  src = open_source(f'folder:{root}')
  with pytest.raises(DatasetError) as e:
    _batches(src, batch_size=5, total_steps=2, processes=processes)
  message = str(e.value)
  assert message.startswith(f'training image {os.path.join("class_1", "broken.jpg")} of '
                            f'folder:{root} cannot be decoded (')
  assert message.endswith('remove or replace it') and '\n' not in message
