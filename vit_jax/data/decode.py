"""Decoding the crop window of a training image, as fast as the host allows.

JPEGs in YCbCr or grayscale (nearly all of ImageNet) go through
libjpeg-turbo, without holding the GIL: the window alone
(`jpeg_region`) where it is decoded at full size, else the whole image
shrunk by a power of two in the DCT domain (the `simplejpeg` wheel; the
shrinking low-passes properly and skips most of the inverse DCT), cropped.
Everything else the eval decoder reads (CMYK and YCCK JPEGs, PNG, GIF, BMP,
TIFF, WebP, a PNG named .jpg, JPEGs libjpeg-turbo only warns about) goes
through PIL exactly as `preprocess.decode_rgb` does, then the same power of
two by box averaging. With libjpeg-turbo's accurate IDCT and smooth chroma
upsampling (its defaults, and PIL's), both decoders give the same pixels.
"""
from __future__ import annotations

import io
import math
from typing import Optional

import numpy as np
import simplejpeg
from PIL import Image

from vit_jax.data import jpeg_region
from vit_jax.data.preprocess import loaded_rgb

_TURBO_COLORSPACES = ('YCbCr', 'Gray', 'RGB')


class UndecodableImage(ValueError):
  """Neither libjpeg-turbo nor PIL can read the bytes."""


class Encoded:
  """An encoded image whose size is known before its pixels are decoded."""
  __slots__ = ('data', 'width', 'height', '_pil')

  def __init__(self, data: bytes):
    self.data = data
    self._pil: Optional[Image.Image] = None
    if simplejpeg.is_jpeg(data):
      try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if colorspace in _TURBO_COLORSPACES:
          self.width, self.height = width, height
          return
      except ValueError:  # a header libjpeg-turbo rejects: PIL may still read it
        pass
    try:
      self._pil = Image.open(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 -- PIL raises many types for bad bytes
      raise UndecodableImage(_reason(e)) from None
    self.width, self.height = self._pil.size

  def window(self, box: tuple[int, int, int, int], reduce: int = 1) -> np.ndarray:
    """uint8 RGB pixels of `box` (left, top, right, bottom), each side
    divided by `reduce` (a power of two); valid until this thread's next call
    (the region decoder reuses its buffer)."""
    if self._pil is None and reduce == 1:
      pixels = jpeg_region.decode_region(self.data, box)
      if pixels is not None:
        return pixels
    pixels = self.decode(reduce)
    left, top = box[0] // reduce, box[1] // reduce
    right = max(left + 1, min(pixels.shape[1], round(box[2] / reduce)))
    bottom = max(top + 1, min(pixels.shape[0], round(box[3] / reduce)))
    return pixels[top:bottom, left:right]

  def decode(self, reduce: int = 1) -> np.ndarray:
    """uint8 (H, W, 3) RGB, each side divided by `reduce` (a power of two,
    rounded up as libjpeg's DCT scaling rounds)."""
    if self._pil is None:
      try:
        return simplejpeg.decode_jpeg(self.data, 'RGB', min_width=_scaled(self.width, reduce),
                                      min_height=_scaled(self.height, reduce))
      except ValueError:  # corrupt data libjpeg-turbo refuses in strict mode: PIL may read it
        pass
    try:
      img = loaded_rgb(self._pil or Image.open(io.BytesIO(self.data)))
    except Exception as e:  # noqa: BLE001 -- truncated or corrupt beyond PIL's tolerance
      raise UndecodableImage(_reason(e)) from None
    if reduce > 1:
      img = img.reduce(reduce)
    return np.asarray(img)


def _scaled(size: int, reduce: int) -> int:
  return math.ceil(size / reduce)


def _reason(e: Exception) -> str:
  text = str(e).splitlines()[0] if str(e) else ''
  return f'{type(e).__name__}: {text}' if text else type(e).__name__
