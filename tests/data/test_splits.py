"""The size of a dataset spec without its records: TFDS's slicing of the
catalogue sizes, for planning a run that counts epochs."""
import re

import pytest

from eval_helpers import photo_folder
from vit_jax.data import splits
from vit_jax.data.sources import DatasetError


@pytest.mark.parametrize('spec, size', [
    ('tfds:imagenet2012:train[:99%]', 1_268_355),   # round(0.99 x 1,281,167)
    ('tfds:imagenet2012:train[99%:]', 12_812),      # minival
    ('tfds:imagenet2012:train', 1_281_167),
    ('tfds:imagenet2012', 50_000),                  # the default split: validation
    ('tfds:imagenet2012_real:validation', 50_000),
    ('tfds:imagenet_v2', 10_000),                   # no validation: its test split
    ('tfds:imagenet_v2/matched-frequency:test[:25%]', 2_500),
    ('tfds:imagenet2012:train[:1000]+validation[-10:]', 1_010),
    ('folder:/data/train', None), ('tfds:cifar10:train', None)])
def test_known_sizes_by_parsing(spec, size):
  assert splits.known_size(spec) == size


def test_a_bad_split_is_one_line():
  for spec, message in (('tfds:imagenet2012:test', "Unknown split 'test'"),
                        ('tfds:imagenet2012:train[:150%]', "Error parsing split 'train[:150%]'")):
    with pytest.raises(DatasetError, match=re.escape(message)) as e:
      splits.known_size(spec)
    assert '\n' not in str(e.value) and str(e.value).startswith('TFDS dataset imagenet2012: ')


def test_the_data_counts_where_it_is_and_the_catalogue_where_not(tmp_path):
  root = photo_folder(str(tmp_path / 'p'), counts=(2, 3))
  assert splits.num_examples(f'folder:{root}') == 5
  empty = str(tmp_path / 'tfds')
  assert splits.num_examples('tfds:imagenet2012:train[:99%]', empty) == 1_268_355
  with pytest.raises(DatasetError, match='does not exist'):
    splits.num_examples(f'folder:{tmp_path}/none')
