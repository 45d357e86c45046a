"""Random-access datasets: `tfds:NAME[:SPLIT]`, `folder:PATH` and `digits:SPLIT`.

Both give records `{'image': encoded bytes, 'label': int, 'id': str}` by
index, which is what Grain needs for exact sharding, padding and resumable
order. Images stay encoded here: decoding happens in the pipeline workers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence

import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')
# Split used when a tfds spec names none: the first of these the dataset has
# (imagenet_v2 has only `test`).
DEFAULT_SPLITS = ('validation', 'test')


class DatasetError(ValueError):
  """A dataset that does not exist or cannot be read; one line, what to do."""


@dataclasses.dataclass
class FolderSource:
  """One sub-folder per class; sorted class names give the label ids."""
  multi_label = False
  root: str
  files: list[str]          # paths relative to root, in label-then-name order
  labels: list[int]
  class_names: list[str]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def spec(self) -> str:
    return f'folder:{self.root}'

  def __len__(self) -> int:
    return len(self.files)

  def id_of(self, i: int) -> str:
    return self.files[i]

  def __getitem__(self, i: int) -> dict:
    path = os.path.join(self.root, self.files[i])
    with open(path, 'rb') as f:
      data = f.read()
    return {'image': data, 'label': self.labels[i], 'id': self.files[i]}


def open_folder(root: str, class_names: Optional[Sequence[str]] = None) -> FolderSource:
  if not os.path.isdir(root):
    raise DatasetError(f'folder dataset {root!r} does not exist')
  found = sorted(d for d in os.listdir(root)
                 if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
  names = list(class_names) if class_names is not None else found
  unknown = sorted(set(found) - set(names))
  if unknown:
    raise DatasetError(f'{root}: sub-folders {unknown[:5]} are not among the given class_names')
  files, labels = [], []
  for label, name in enumerate(names):
    folder = os.path.join(root, name)
    if not os.path.isdir(folder):
      continue
    for dirpath, _, filenames in sorted(os.walk(folder, followlinks=True)):
      for fn in sorted(filenames):
        if fn.lower().endswith(IMAGE_SUFFIXES) and not fn.startswith('.'):
          files.append(os.path.relpath(os.path.join(dirpath, fn), root))
          labels.append(label)
  if not files:
    raise DatasetError(f'{root}: no images found (expected one sub-folder per class holding '
                       f'{", ".join(IMAGE_SUFFIXES)} files)')
  return FolderSource(root, files, labels, names)


class TfdsSource:
  """A prepared TFDS split read through `tfds.data_source` (ArrayRecord)."""

  def __init__(self, name: str, split: Optional[str], data_dir: Optional[str]):
    import tensorflow_datasets as tfds
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 -- tfds raises many types for a bad name
      raise DatasetError(f'unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}') from None
    if not builder.is_prepared():
      raise DatasetError(_not_prepared_message(name, data_dir or tfds.core.constants.DATA_DIR))
    if not split:
      split = next((s for s in DEFAULT_SPLITS if s in builder.info.splits), DEFAULT_SPLITS[0])
    try:
      self._source = builder.as_data_source(split=split,
                                            decoders={'image': tfds.decode.SkipDecoding()})
    except NotImplementedError:  # prepared, but as TFRecord: no random access
      raise DatasetError(
          f'TFDS dataset {name} under {builder.data_dir} is prepared as TFRecord, which has no '
          f'random access: convert its shards to ArrayRecord once with `tfds convert_format '
          f'--dataset_version_dir={builder.data_dir} --out_file_format=array_record` (no new '
          f'download; needs tensorflow), or rebuild it with `tfds build {name} '
          '--file_format=array_record`') from None
    except ValueError as e:  # an unknown split, or a bad slice of one
      raise DatasetError(f'TFDS dataset {name}: {str(e).splitlines()[0]} '
                         f'(spec: tfds:{name}:SPLIT)') from None
    features = builder.info.features
    # imagenet2012_real: the original label plus the ReaL multi-label set
    self._label_key = next((k for k in ('label', 'original_label') if k in features), None)
    if self._label_key is None:
      raise DatasetError(f'TFDS dataset {name} has no label feature; it cannot be evaluated')
    self.multi_label = 'real_label' in features
    self.class_names = list(features[self._label_key].names)
    self._name, self._split = name, split

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def spec(self) -> str:
    return f'tfds:{self._name}:{self._split}'

  def __len__(self) -> int:
    return len(self._source)

  def id_of(self, i: int) -> str:
    """NAME/SPLIT/INDEX: stable for a prepared split, known without reading."""
    return f'{self._name}/{self._split}/{i}'

  def __getitem__(self, i: int) -> dict:
    ex = self._source[i]
    record = {'image': ex['image'], 'label': int(ex[self._label_key]), 'id': self.id_of(i)}
    if self.multi_label:
      record['real'] = [int(r) for r in np.asarray(ex['real_label']).reshape(-1)]
    return record


def _not_prepared_message(name: str, data_dir: Any) -> str:
  if name.startswith('imagenet2012'):
    return (f'TFDS dataset {name} is not prepared under {data_dir}: download '
            'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org into a '
            f'manual dir, then run `tfds build {name} --manual_dir=MANUAL_DIR '
            f'--data_dir={data_dir} --file_format=array_record` (needs tensorflow)')
  return (f'TFDS dataset {name} is not prepared under {data_dir}: run `tfds build {name} '
          f'--data_dir={data_dir} --file_format=array_record` where it can download')


def _check_local(what: str, path: Optional[str]) -> None:
  """Data is read record by record from a file system: ArrayRecord's reader
  opens local files only, and a folder of images would cost a request per
  image. A bucket is mounted instead."""
  from vit_jax import storage  # here: input worker processes unpickling a source need none of it
  if path and storage.is_remote(path):
    raise DatasetError(f'{what} {path}: datasets are read from a file system, not from cloud '
                       'storage; mount the bucket with gcsfuse (`gcsfuse --implicit-dirs BUCKET '
                       '/mnt/BUCKET`) and give the path under /mnt/BUCKET')


def open_source(spec: str, data_dir: Optional[str] = None,
                class_names: Optional[Sequence[str]] = None):
  """A random-access source for `tfds:NAME[:SPLIT]` or `folder:PATH`."""
  kind, sep, rest = spec.partition(':')
  if not sep or not rest:
    raise DatasetError(f'dataset {spec!r}: use tfds:NAME[:SPLIT], folder:PATH or digits:SPLIT')
  _check_local('data_dir', data_dir)
  if data_dir:  # TFDS expands no `~`, and a shell leaves --config.data_dir=~/... as it is
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
  if kind == 'folder':
    _check_local('dataset folder', rest)
    return open_folder(os.path.expanduser(rest), class_names)
  if kind == 'tfds':
    name, _, split = rest.partition(':')
    return TfdsSource(name, split or None, data_dir)
  if kind == 'digits':  # scikit-learn's digits, written as a folder on first use
    from vit_jax.data import digits
    if rest not in ('train', 'test'):
      raise DatasetError(f'dataset {spec!r}: digits has the splits train and test')
    root = digits.ensure_digits(os.path.join(data_dir, 'digits') if data_dir
                                else digits.default_root())
    return open_folder(os.path.join(root, rest), class_names)
  raise DatasetError(f'dataset {spec!r}: unknown kind {kind!r}; use tfds:NAME[:SPLIT], '
                     'folder:PATH or digits:SPLIT')
