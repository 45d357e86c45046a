"""Folder and TFDS sources: ordering, labels and one-line errors."""
import json
import os

import pytest

from vit_jax.data.sources import DatasetError, open_source
from eval_helpers import photo_folder, tfds_twin


def test_folder_labels_follow_sorted_class_names(tmp_path):
  root = photo_folder(str(tmp_path / 'ds'), counts=(2, 1, 3))
  (tmp_path / 'ds' / 'class_0' / 'notes.txt').write_text('not an image')
  src = open_source(f'folder:{root}')
  assert src.class_names == ['class_0', 'class_1', 'class_2'] and len(src) == 6
  assert [src[i]['label'] for i in range(6)] == [0, 0, 1, 2, 2, 2]
  assert src[0]['id'] == os.path.join('class_0', '0.png') and src.id_of(5) == src[5]['id']
  assert src[3]['image'][:4] == b'\x89PNG' or src[3]['image'][:2] == b'\xff\xd8'


def test_explicit_class_names_give_the_label_ids(tmp_path):
  root = photo_folder(str(tmp_path / 'ds'), counts=(1, 1))
  src = open_source(f'folder:{root}', class_names=['class_1', 'extra', 'class_0'])
  assert [src[i]['label'] for i in range(len(src))] == [0, 2]
  with pytest.raises(DatasetError, match='not among the given class_names'):
    open_source(f'folder:{root}', class_names=['class_0'])


def test_bad_specs_are_one_line_errors(tmp_path):
  os.makedirs(tmp_path / 'empty' / 'a')
  cases = {f'folder:{tmp_path}/missing': 'does not exist',
           f'folder:{tmp_path}/empty': 'no images found',
           'imagenet': 'use tfds:NAME', 'hf:beans': "unknown kind 'hf'",
           'tfds:no_such_dataset_xyz': "unknown TFDS dataset 'no_such_dataset_xyz'"}
  for spec, message in cases.items():
    with pytest.raises(DatasetError, match=message) as e:
      open_source(spec, data_dir=str(tmp_path / 'tfds'))
    assert '\n' not in str(e.value)


def test_unprepared_imagenet_says_what_to_download(tmp_path):
  with pytest.raises(DatasetError) as e:
    open_source('tfds:imagenet2012:validation', data_dir=str(tmp_path))
  msg = str(e.value)
  assert 'ILSVRC2012_img_val.tar' in msg and 'tfds build imagenet2012' in msg
  assert f'--data_dir={tmp_path}' in msg and '--manual_dir' in msg


def test_tfds_source_gives_encoded_images_labels_and_ids(tmp_path):
  root = photo_folder(str(tmp_path / 'p'), counts=(2, 3))
  data_dir = str(tmp_path / 'tfds')
  name = tfds_twin(data_dir, root)
  folder = open_source(f'folder:{root}')
  label_of = {folder[i]['image']: folder[i]['label'] for i in range(len(folder))}
  src = open_source(f'tfds:{name}', data_dir=data_dir)  # the default split: validation
  assert len(src) == 5 and src.class_names == ['class_0', 'class_1'] and src.num_classes == 2
  records = [src[i] for i in range(5)]
  assert {r['image'] for r in records} == set(label_of)  # the encoded bytes, undecoded
  for i, r in enumerate(records):
    assert r['label'] == label_of[r['image']]
    assert r['id'] == src.id_of(i) == f'{name}/validation/{i}'
  part = open_source(f'tfds:{name}:validation[1:3]', data_dir=data_dir)
  assert len(part) == 2 and part[0]['image'] == records[1]['image']


def test_imagenet_real_labels_a_default_test_split_and_percent_slices(tmp_path):
  """imagenet2012_real's features (`original_label`, the multi-label
  `real_label`), and a dataset with only a test split (as imagenet_v2)."""
  root = photo_folder(str(tmp_path / 'p'), counts=(2, 3))
  data_dir = str(tmp_path / 'tfds')
  real = [[0], [], [0, 1], [1], [1]]
  name = tfds_twin(data_dir, root, 'vit_jax_test_real', split='test', real=real)
  src = open_source(f'tfds:{name}', data_dir=data_dir)  # no validation split: test
  assert src.spec == f'tfds:{name}:test' and src.multi_label and len(src) == 5
  folder = open_source(f'folder:{root}')
  labels_of = {folder[i]['image']: (folder[i]['label'], real[i]) for i in range(5)}
  records = [src[i] for i in range(5)]  # in TFDS's order, not the folder's
  assert [(r['label'], r['real']) for r in records] == [labels_of[r['image']] for r in records]
  part = open_source(f'tfds:{name}:test[40%:]', data_dir=data_dir)  # round(0.4 x 5) = 2
  assert len(part) == 3 and part[0] == {**records[2], 'id': f'{name}/test[40%:]/0'}


def test_tfds_bad_split_and_tfrecord_format_are_one_line_errors(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  name = tfds_twin(data_dir, photo_folder(str(tmp_path / 'p'), counts=(1, 1)))
  with pytest.raises(DatasetError, match="Unknown split 'train'") as e:
    open_source(f'tfds:{name}:train', data_dir=data_dir)
  assert '\n' not in str(e.value)
  info = os.path.join(data_dir, name, '1.0.0', 'dataset_info.json')
  with open(info) as f:
    meta = json.load(f)
  meta['fileFormat'] = 'tfrecord'  # as `tfds build` writes by default
  with open(info, 'w') as f:
    json.dump(meta, f)
  with pytest.raises(DatasetError, match='--file_format=array_record') as e:
    open_source(f'tfds:{name}', data_dir=data_dir)
  message = str(e.value)
  assert '\n' not in message and 'prepared as TFRecord' in message
  version_dir = os.path.join(data_dir, name, '1.0.0')
  convert = (f'`tfds convert_format --dataset_version_dir={version_dir} '
             '--out_file_format=array_record`')
  assert convert in message and message.index(convert) < message.index('tfds build')


def test_a_data_dir_with_a_tilde_or_relative_to_the_working_directory(tmp_path, monkeypatch):
  home = tmp_path / 'home'
  name = tfds_twin(str(home / 'tfds'), photo_folder(str(tmp_path / 'p'), counts=(1, 2)))
  monkeypatch.setenv('HOME', str(home))
  assert len(open_source(f'tfds:{name}', data_dir='~/tfds')) == 3
  monkeypatch.chdir(home)
  assert len(open_source(f'tfds:{name}', data_dir='tfds')) == 3


@pytest.mark.parametrize('spec, data_dir', [('tfds:imagenet2012', 'gs://bucket/tfds'),
                                            ('folder:gs://bucket/train', None)])
def test_a_dataset_on_cloud_storage_is_one_line_naming_gcsfuse(spec, data_dir):
  with pytest.raises(DatasetError) as e:
    open_source(spec, data_dir=data_dir)
  assert '\n' not in str(e.value) and 'gs://bucket/' in str(e.value)
  assert 'gcsfuse --implicit-dirs BUCKET /mnt/BUCKET' in str(e.value)
