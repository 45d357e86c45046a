"""Decoding and timm's eval transform, done with PIL exactly as timm does.

timm evaluated the card's weights with torchvision on PIL images: resize the
shorter side to floor(image_size / crop_pct) with PIL's (antialiased)
bicubic, centre crop, then scale to [0, 1] and normalise. Using PIL here too
makes our crops identical to timm's, byte for byte. The 'squash' crop mode
(timm's name) resizes both sides instead, ignoring the aspect ratio, as
Hugging Face's ViT image processors do. The 'big_vision' crop mode is
big_vision's `resize_small | central_crop` (the long side rounded, not
truncated; the crop offsets floored), and interpolation 'area' its
TensorFlow area resize (`vit_jax.data.area_resize`).
"""
from __future__ import annotations

import io
import math
from typing import Sequence, Union

import numpy as np
from PIL import Image

from vit_jax.data import area_resize

_INTERPOLATION = {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR,
                  'nearest': Image.NEAREST, 'lanczos': Image.LANCZOS}
CROP_MODES = ('center', 'squash', 'big_vision')


def decode_rgb(data: Union[bytes, str]) -> Image.Image:
  """Encoded bytes (or a path) to an RGB image: grayscale, palette, CMYK and
  alpha images are converted as `Image.open(f).convert('RGB')` does."""
  return loaded_rgb(Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray))
                               else data))


def loaded_rgb(img: Image.Image) -> Image.Image:
  """An opened image's pixels, as `decode_rgb` gives them."""
  img.load()
  return img if img.mode == 'RGB' else img.convert('RGB')  # RGB as decoded: no copy


def shorter_side_size(w: int, h: int, size: int) -> tuple[int, int]:
  """torchvision's Resize(int) output (w, h): short side `size`, long side truncated."""
  short, long = (w, h) if w <= h else (h, w)
  new_short, new_long = size, int(size * long / short)
  return (new_short, new_long) if w <= h else (new_long, new_short)


def resize_small_size(w: int, h: int, size: int) -> tuple[int, int]:
  """big_vision's resize_small output (w, h): both sides times size / the
  shorter side, in float32, rounded half to even (as TensorFlow computes it)."""
  factor = np.float32(size) / np.float32(min(w, h))
  return int(np.round(np.float32(w) * factor)), int(np.round(np.float32(h) * factor))


def resize_shorter_side(img: Image.Image, size: int, interpolation: str = 'bicubic'
                        ) -> Image.Image:
  """torchvision's Resize(int): short side to `size`, long side truncated."""
  return _resize_to(img, shorter_side_size(*img.size, size), interpolation)


def _resize_to(img: Image.Image, new_size: tuple[int, int], interpolation: str) -> Image.Image:
  if new_size == img.size:
    return img
  if interpolation == 'area':
    return Image.fromarray(area_resize.resize_uint8(np.asarray(img), new_size[1], new_size[0]))
  return img.resize(new_size, _INTERPOLATION[interpolation])


def center_offsets(w: int, h: int, size: int, floor: bool = False) -> tuple[int, int]:
  """(left, top) of torchvision's CenterCrop in the image: rounded half to
  even, as Python does (`floor`: rounded down, as big_vision's central_crop);
  negative where it pads a side shorter than `size`."""
  def offset(n: int) -> int:
    if n < size:
      return -((size - n) // 2)
    return (n - size) // 2 if floor else int(round((n - size) / 2.0))
  return offset(w), offset(h)


def center_crop(img: Image.Image, size: int, floor: bool = False) -> Image.Image:
  """torchvision's CenterCrop: offsets rounded half to even, as Python does
  (`floor`: rounded down)."""
  w, h = img.size
  if w < size or h < size:  # torchvision pads with zeros before cropping
    canvas = Image.new('RGB', (max(w, size), max(h, size)))
    canvas.paste(img, ((max(w, size) - w) // 2, (max(h, size) - h) // 2))
    img, (w, h) = canvas, canvas.size
  left, top = center_offsets(w, h, size, floor)
  return img.crop((left, top, left + size, top + size))


def _resized_size(w: int, h: int, image_size: int, crop_pct: float, crop_mode: str
                  ) -> tuple[int, int]:
  """(w, h) of the image before the centre crop."""
  scale = math.floor(image_size / crop_pct)
  if crop_mode == 'center':
    return shorter_side_size(w, h, scale)
  if crop_mode == 'squash':
    return scale, scale
  if crop_mode == 'big_vision':
    return resize_small_size(w, h, scale)
  raise ValueError(f'crop_mode must be one of {CROP_MODES}, got {crop_mode!r}')


def eval_crop(img: Image.Image, image_size: int, crop_pct: float,
              interpolation: str = 'bicubic', crop_mode: str = 'center') -> np.ndarray:
  """uint8 (image_size, image_size, 3): PIL's output before normalisation."""
  img = _resize_to(img, _resized_size(*img.size, image_size, crop_pct, crop_mode), interpolation)
  return np.asarray(center_crop(img, image_size, crop_mode == 'big_vision'), np.uint8)


def eval_crop_box(w: int, h: int, image_size: int, crop_pct: float, crop_mode: str = 'center'
                  ) -> tuple[float, float, float, float]:
  """(left, top, right, bottom) of the eval crop in the original image's
  pixels: where a map over the crop belongs on the uncropped picture."""
  new_w, new_h = _resized_size(w, h, image_size, crop_pct, crop_mode)
  left, top = center_offsets(new_w, new_h, image_size, crop_mode == 'big_vision')
  sx, sy = new_w / w, new_h / h
  return left / sx, top / sy, (left + image_size) / sx, (top + image_size) / sy


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """uint8 NHWC (or HWC) to float32 scaled to [0, 1], minus mean, over std."""
  x = images.astype(np.float32) / 255.0
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
