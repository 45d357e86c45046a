"""Training batches as a pure function of (seed, step): resumable exactly.

Row r of the global batch at step s is example `perm_e[(s * B + r) % N]` of
epoch e = (s * B + r) // N, with `perm_e` a seeded permutation; process p
loads rows [p * L, (p + 1) * L). Augmentation draws from a generator seeded
with (seed, s, r). So the global batch does not depend on the number of
hosts or devices, and a run restarted at step s sees the batches it would
have seen. Decoding and augmentation run in Grain's reader threads.
"""
from __future__ import annotations

import functools
import math
from typing import Iterator

import grain
import numpy as np
from PIL import Image

from vit_jax.data.preprocess import decode_rgb

_INTERP = {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR}


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def example_index(seed: int, step: int, row: int, batch_size: int, n: int) -> int:
  pos = step * batch_size + row
  return int(_permutation(seed, pos // n, n)[pos % n])


def inception_crop_box(rng: np.random.Generator, width: int, height: int,
                       scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3)
                       ) -> tuple[int, int, int, int]:
  """A random area fraction and aspect ratio (log-uniform), 10 tries, then the
  largest central crop that fits the ratio range (as torchvision/Inception)."""
  area = width * height
  log_ratio = np.log(ratio)
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    w, h = int(round(height * ratio[1])), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def augment(data: bytes, rng: np.random.Generator, image_size: int,
            crop_scale: tuple[float, float], flip: bool, interpolation: str) -> np.ndarray:
  """Random resized crop to `image_size`, then a horizontal flip half the time."""
  img = decode_rgb(data)
  box = inception_crop_box(rng, img.width, img.height, crop_scale)
  img = img.resize((image_size, image_size), _INTERP[interpolation], box=box)
  out = np.asarray(img, np.uint8)
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


def train_batches(source, *, seed: int, start_step: int, total_steps: int, batch_size: int,
                  image_size: int, process_index: int = 0, process_count: int = 1,
                  crop_scale: tuple[float, float] = (0.08, 1.0), flip: bool = True,
                  interpolation: str = 'bilinear', workers: int = 8) -> Iterator[dict]:
  """This process's rows of the global batches of steps [start_step, total_steps):
  dicts of `image` uint8 (L, S, S, 3) and `label` int32 (L,)."""
  local = batch_size // process_count
  n = len(source)

  def load(j: int) -> tuple[np.ndarray, int]:
    step = start_step + j // local
    row = process_index * local + j % local
    record = source[example_index(seed, step, row, batch_size, n)]
    rng = np.random.default_rng([seed, step, row])
    return (augment(record['image'], rng, image_size, tuple(crop_scale), flip, interpolation),
            record['label'])

  count = max(total_steps - start_step, 0) * local
  ds = grain.MapDataset.range(count).map(load).batch(
      local, batch_fn=lambda rows: {'image': np.stack([r[0] for r in rows]),
                                    'label': np.array([r[1] for r in rows], np.int32)})
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=workers,
                                                   prefetch_buffer_size=2 * workers)))
