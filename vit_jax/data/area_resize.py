"""TensorFlow's area resize (`tf.image.resize(method='area')`) in numpy.

big_vision evaluates its ImageNet models with `resize_small`, which is this
resize (TensorFlow's `ResizeArea` kernel, no antialiasing option involved)
followed by a cast back to uint8 that truncates. Each output pixel is the
average of the input pixels its box covers, partly covered ones weighted
by the covered fraction. The arithmetic below is the kernel's own, in
float32 and in its order (a row's sum along x first, then the rows'
weighted sum, then one scale), so the result is TensorFlow's up to the
last bit in nearly every pixel and within one level of 255 in all.
"""
from __future__ import annotations

import numpy as np


def _axis(n_in: int, n_out: int, inner_weighted: bool
          ) -> tuple[np.ndarray, np.ndarray, np.float32]:
  """(first input index, weights (n_out, terms), scale) of each output along
  one axis, computed as the kernel does. An output's inputs past its last
  weigh 0 (adding them changes nothing); the inner ones 1 where the kernel
  adds them unweighted (along x)."""
  scale = np.float32(n_in) / np.float32(n_out)
  o = np.arange(n_out)
  lo = o.astype(np.float32) * scale
  hi = (o + 1).astype(np.float32) * scale
  start = np.floor(lo).astype(np.int64)
  count = np.ceil(hi).astype(np.int64) - start
  k = np.arange(count.max())[None, :]
  i = (start[:, None] + k).astype(np.float32)
  lo, hi = lo[:, None], hi[:, None]
  # the covered part of input pixel i: [i, i + 1) within [lo, hi)
  w = np.where(i < lo, np.where(i + 1 > hi, scale, i + 1 - lo),
               np.where(i + 1 > hi, hi - i, np.float32(1.0))).astype(np.float32)
  if not inner_weighted:
    w = np.where((k > 0) & (k < count[:, None] - 1), np.float32(1.0), w)
  return start, np.where(k < count[:, None], w, np.float32(0.0)), scale


def _accumulate(a: np.ndarray, start: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
  """out[.., o, ..] = a[.., start[o], ..] * w[o, 0] + a[.., start[o] + 1, ..] * w[o, 1]
  + ... along `axis` (0 or 1) of an (H, W, C) array, summed in this order in
  float32; an index that rounding pushed past the end is clamped, as the
  kernel does."""
  # weights as (terms, 1, W, C) or (terms, H, 1, 1): numpy's inner loops then run
  # over whole rows, not over the C channels of one pixel
  w = (np.repeat(w.T[:, None, :, None], a.shape[2], axis=3) if axis == 1
       else w.T[:, :, None, None])
  out = np.take(a, start, axis=axis, mode='clip')
  out *= w[0]
  term = np.empty_like(out)
  for k in range(1, len(w)):
    np.take(a, start + k, axis=axis, mode='clip', out=term)
    term *= w[k]
    out += term
  return out


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """float32 (height, width, C) of a (H, W, C) image, as `tf.image.resize(
  image, (height, width), method='area')`."""
  ys, yw, sy = _axis(image.shape[0], height, inner_weighted=True)
  xs, xw, sx = _axis(image.shape[1], width, inner_weighted=False)
  rows = _accumulate(np.asarray(image, np.float32), xs, xw, axis=1)
  out = _accumulate(rows, ys, yw, axis=0)
  # one scale for the box's area, computed as the kernel does (in double, then float)
  return out * np.float32(1.0 / np.float64(sy * sx))


def resize_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """The area resize cast back to uint8 as big_vision's `resize_small` does:
  clipped to [0, 255], truncated."""
  return np.clip(resize(image, height, width), 0, 255).astype(np.uint8)
