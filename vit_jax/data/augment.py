"""The training augmentation of one image: Inception crop, resize, flip.

The random numbers come in as a row of uniforms drawn ahead for the whole
batch (`draws`), so an image's augmentation costs no generator of its own and
depends only on (seed, step, row). The crop follows torchvision's and
Inception's RandomResizedCrop: an area fraction uniform in `scale`, a
log-uniform aspect ratio in 3/4..4/3, ten tries, then the largest central
crop within the ratio range.

Only the window is decoded where it can be (`decode`). Resizing works in
uint8: a power-of-two reduction first (libjpeg-turbo's DCT scaling for
JPEGs, a box average otherwise) while the window stays at least the output
size, then OpenCV's bilinear (or bicubic)
interpolation, which therefore never shrinks by 2x or more. That keeps
aliasing to what a factor below two gives, as big_vision's
`tf.image.resize(antialias=False)` has at any factor.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from vit_jax.data.decode import Encoded

TRIES = 10
RATIO = (3 / 4, 4 / 3)
# per image: an area and an aspect ratio per try, the window's top and left, the flip
DRAWS_PER_IMAGE = 2 * TRIES + 3
INTERPOLATION = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC}


def inception_crop_box(u: Sequence[float], width: int, height: int,
                       scale: tuple[float, float], ratio: tuple[float, float] = RATIO
                       ) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) of the crop, from the uniforms `u` in [0, 1)."""
  area = width * height
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for i in range(TRIES):
    target = area * (scale[0] + (scale[1] - scale[0]) * u[2 * i])
    aspect = math.exp(log_lo + (log_hi - log_lo) * u[2 * i + 1])
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(u[2 * TRIES] * (height - h + 1))
      left = int(u[2 * TRIES + 1] * (width - w + 1))
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


def reduction(box: tuple[int, int, int, int], size: int) -> int:
  """The largest power of two that keeps both sides of the window >= `size`."""
  shorter = min(box[2] - box[0], box[3] - box[1])
  k = 1
  while shorter >= 2 * k * size and k < 8:  # libjpeg scales by at most 1/8
    k *= 2
  return k


def augment_into(out: np.ndarray, data: bytes, u: Sequence[float], *,
                 scale: tuple[float, float], flip: bool, interpolation: str) -> None:
  """Decode `data`, crop, resize into `out` (uint8 (S, S, 3)), maybe flip."""
  image = Encoded(data)
  box = inception_crop_box(u, image.width, image.height, scale)
  k = reduction(box, out.shape[0])
  cv2.resize(image.window(box, k), out.shape[1::-1], dst=out,
             interpolation=INTERPOLATION[interpolation])
  if flip and u[2 * TRIES + 2] < 0.5:
    cv2.flip(out, 1, dst=out)
