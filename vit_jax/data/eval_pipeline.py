"""Evaluation batches: every example exactly once, on any number of hosts.

Process p of P reads indices p, p + P, ...; every process yields the same
number of batches (the longest shard decides), padded with masked rows, so
the global batches line up across hosts and nothing is dropped or doubled.
Decoding and the PIL transform run in Grain's reader threads (PIL releases
the GIL), ahead of the device.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional

import grain
import numpy as np
from PIL import UnidentifiedImageError

from vit_jax.data.preprocess import decode_rgb, eval_crop


def _load(source, index: int, image_size: int, crop_pct: float, interpolation: str,
          crop_mode: str) -> dict:
  """Read, decode and crop one record; a file that cannot be read or decoded
  becomes a flagged blank, so one bad file neither stops nor skews the run."""
  record = {'label': 0, 'id': source.id_of(index), 'real': []}
  try:
    record = source[index]
    image = eval_crop(decode_rgb(record['image']), image_size, crop_pct, interpolation,
                      crop_mode)
    error = ''
  except UnidentifiedImageError:
    image, error = np.zeros((image_size, image_size, 3), np.uint8), 'not an image PIL can read'
  except OSError as e:  # a missing, unreadable or truncated file
    image = np.zeros((image_size, image_size, 3), np.uint8)
    error = f'cannot read it ({type(e).__name__}: {e.strerror or _first_line(e)})'
  except Exception as e:  # noqa: BLE001 -- PIL raises many types for corrupt files
    image = np.zeros((image_size, image_size, 3), np.uint8)
    error = f'corrupt image ({type(e).__name__}: {_first_line(e)})'
  return {'image': image, 'label': record['label'], 'index': index, 'id': record['id'],
          'error': error, 'real': record.get('real')}


def _first_line(e: Exception) -> str:
  return str(e).splitlines()[0] if str(e) else ''


def num_batches(num_records: int, local_batch: int, process_count: int) -> int:
  """Batches every process yields: enough for the largest shard."""
  return max(1, math.ceil(math.ceil(num_records / process_count) / local_batch))


def eval_batches(source, *, local_batch: int, image_size: int, crop_pct: float,
                 interpolation: str = 'bicubic', crop_mode: str = 'center',
                 process_index: int = 0,
                 process_count: int = 1, workers: int = 8,
                 prefetch: Optional[int] = None) -> Iterator[dict]:
  """Yields dicts of host arrays: `image` uint8 (B, S, S, 3), `label` int32,
  `index` int64 (-1 for padding), `valid` bool (a real, decodable example),
  `skipped` bool (a real example whose image could not be decoded), plus
  `ids` and `errors` (lists of this batch's unreadable files). A multi-label
  source (ImageNet ReaL) adds `real`, bool (B, num_classes)."""
  size = len(source)
  indices = range(process_index, size, process_count)
  ds = grain.MapDataset.range(len(indices)).map(
      lambda i: _load(source, indices[i], image_size, crop_pct, interpolation, crop_mode))
  ds = ds.batch(local_batch, batch_fn=list)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=workers,
                                            prefetch_buffer_size=prefetch or 2 * workers))
  classes = source.num_classes if getattr(source, 'multi_label', False) else 0
  produced = 0
  for rows in it:
    yield _collate(rows, local_batch, image_size, classes)
    produced += 1
  for _ in range(num_batches(size, local_batch, process_count) - produced):
    yield _collate([], local_batch, image_size, classes)


def _collate(rows: list, local_batch: int, image_size: int, multi_label_classes: int) -> dict:
  pad = local_batch - len(rows)
  image = np.zeros((local_batch, image_size, image_size, 3), np.uint8)
  for i, r in enumerate(rows):
    image[i] = r['image']
  ok = [not r['error'] for r in rows]
  extra = {}
  if multi_label_classes:
    real = np.zeros((local_batch, multi_label_classes), bool)
    for i, r in enumerate(rows):
      real[i, r['real']] = True
    extra['real'] = real
  return {**extra,
      'image': image,
      'label': np.array([r['label'] for r in rows] + [0] * pad, np.int32),
      'index': np.array([r['index'] for r in rows] + [-1] * pad, np.int64),
      'valid': np.array(ok + [False] * pad, bool),
      'skipped': np.array([not k for k in ok] + [False] * pad, bool),
      'ids': [r['id'] for r in rows],
      'errors': [(r['id'], r['error']) for r in rows if r['error']],
  }
