"""big_vision's RandAugment on the host, in uint8, computed as its TensorFlow code computes it.

RandAugment (Cubuk et al. 2019) as big_vision's `randaug(N, M)` runs it
(`pp/archive/autoaugment.py`, forked from the TPU EfficientNet code): N
layers, each applying one of 16 ops chosen uniformly, always (the
probability it draws is unused), at the fixed magnitude M on big_vision's
10-level scale. Pixels a geometric op leaves empty are gray (128). The
magnitude-to-argument table (`argument`):

  Rotate          M/10 * 30 degrees, random sign (counterclockwise when positive)
  ShearX, ShearY  M/10 * 0.3, random sign
  TranslateX/Y    M/10 * 100 pixels, random sign (whatever the image size)
  Color, Contrast, Brightness, Sharpness   blend factor M/10 * 1.8 + 0.1
  Posterize       int(M/10 * 4) bits kept
  Solarize        threshold int(M/10 * 256)
  SolarizeAdd     int(M/10 * 110) added below 128
  Cutout          a square of half-side int(M/10 * 40) at a uniform centre
  AutoContrast, Equalize, Invert   no argument

Every value is what TensorFlow computes (checked against it in
tests/fixtures/randaugment): blends in float32 truncated to uint8, the
grayscale of `tf.image.rgb_to_grayscale` (float32 dot product times 255.5,
truncated), `tfa.image.transform`'s geometry (nearest pixel, rounding half
away from zero, pixel centres at integer coordinates, rotation about
((W-1)/2, (H-1)/2)). Its oddities are kept:

- Solarize's threshold and Posterize's shift are converted to uint8, so they
  wrap: at M=10 the threshold 256 becomes 0 and Solarize inverts every
  pixel (at M=15, 384 becomes 128); a shift of 8 or more (Posterize at
  M < 5, or past M=22.5 where 8 - bits < 0 wraps to 248..255) is clamped to 7
  by TensorFlow's shift, which keeps the top bit instead of zeroing.
- Contrast blends toward a constant, not the image mean: its mean is the sum
  of a 256-bin histogram over 256, i.e. (height * width) / 256 (196 at 224 px).
- Sharpness's smoothed image is truncated from float32, so even a flat area
  loses one level at 52 of the 256 values (3 becomes 2).
- Shears are about the top-left corner, not the centre; translations are in
  pixels, so at 100 px they empty most of a small image.
- Blending past factor 1 clips; below 1 it truncates, never rounds; and
  AutoContrast's float32 stretch, truncated, ends at 254 instead of 255 for
  about one (lowest, highest) pair in six.

`apply_op(image, op, magnitude, negate=False)` runs one op alone;
`RandAugment(N, M).apply(image, u)` the policy with its random choices taken
from uniforms `u` (DRAWS_PER_LAYER per layer), as the training input does.
Tables and pixel maps depend only on (op, magnitude, sign, image size), so
they are built once and each op is a lookup, a remap or a few numpy passes,
all of which release the GIL.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'Color',
       'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
       'Cutout', 'SolarizeAdd')
SIGNED = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
GRAY = 128
MAX_LEVEL = 10.0
TRANSLATE_CONST = 100
CUTOUT_CONST = 40
FORM = ('(N, M), N layers (an integer >= 0) at magnitude M (a number >= 0), e.g. (2, 10), '
        'or () for none')
# per layer: the op, the sign of a signed op's argument, Cutout's centre row and column
DRAWS_PER_LAYER = 4

_F32 = np.float32
_GRAY_WEIGHTS = (_F32(0.2989), _F32(0.5870), _F32(0.1140))   # tf.image.rgb_to_grayscale
_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], _F32) / _F32(13)  # PIL's SMOOTH
_VALUES = np.arange(256)

Kernel = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def argument(op: str, magnitude: float) -> Optional[float]:
  """big_vision's argument of `op` at `magnitude` (its level_to_arg), before any sign."""
  level = float(magnitude) / MAX_LEVEL
  if op == 'Rotate':
    return level * 30.0
  if op in ('ShearX', 'ShearY'):
    return level * 0.3
  if op in ('TranslateX', 'TranslateY'):
    return level * float(TRANSLATE_CONST)
  if op in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 + 0.1
  integer = {'Posterize': 4, 'Solarize': 256, 'SolarizeAdd': 110, 'Cutout': CUTOUT_CONST}
  return int(level * integer[op]) if op in integer else None


def parse_randaug(value, key: str = 'randaug') -> Optional[tuple[int, float]]:
  """(layers, magnitude) of a RandAugment setting, None for none (`()` or
  None); anything else is a ValueError that names `key` and the form."""
  if value is None or (isinstance(value, (tuple, list)) and not value):
    return None
  if not (isinstance(value, (tuple, list)) and len(value) == 2
          and isinstance(value[0], numbers.Integral) and not isinstance(value[0], bool)
          and value[0] >= 0 and _magnitude_ok(value[1])):
    raise ValueError(f'{key} must be {FORM}; got {value!r}')
  return (int(value[0]), float(value[1])) if value[0] else None


def _magnitude_ok(m) -> bool:
  return (isinstance(m, numbers.Real) and not isinstance(m, bool) and math.isfinite(m)
          and m >= 0)


def apply_op(image: np.ndarray, op: str, magnitude: float, negate: bool = False,
             center: Optional[tuple[int, int]] = None) -> np.ndarray:
  """`op` (one of OPS) at `magnitude` on a uint8 (H, W, 3) image; a new array.
  `negate` flips the sign of a signed op's argument (big_vision draws it);
  `center` is Cutout's (row, column), by default the image's middle."""
  if op not in OPS:
    raise ValueError(f'unknown RandAugment op {op!r}; ops are: {", ".join(OPS)}')
  if not _magnitude_ok(magnitude):
    raise ValueError(f'magnitude must be a finite number >= 0, got {magnitude!r}')
  image = np.ascontiguousarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f'expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}')
  h, w = image.shape[:2]
  fn = kernel(op, float(magnitude), bool(negate) and op in SIGNED, h, w)
  return fn(image, (h // 2, w // 2) if center is None else center)


class RandAugment:
  """`num_layers` ops at `magnitude`, each chosen uniformly among OPS."""

  def __init__(self, num_layers: int, magnitude: float):
    self.num_layers, self.magnitude = int(num_layers), float(magnitude)

  @property
  def draws(self) -> int:
    return DRAWS_PER_LAYER * self.num_layers

  def apply(self, image: np.ndarray, u: Sequence[float]) -> np.ndarray:
    """The augmented uint8 (H, W, 3) image (`image` itself is left as it is),
    its choices from the uniforms u[0:draws] in [0, 1)."""
    h, w = image.shape[:2]
    for layer in range(self.num_layers):
      op_u, sign_u, row_u, col_u = u[DRAWS_PER_LAYER * layer:DRAWS_PER_LAYER * (layer + 1)]
      op = OPS[int(op_u * len(OPS))]
      fn = kernel(op, self.magnitude, op in SIGNED and sign_u < 0.5, h, w)
      image = fn(image, (int(row_u * h), int(col_u * w)))
    return image


@functools.lru_cache(maxsize=512)
def kernel(op: str, magnitude: float, negate: bool, height: int, width: int) -> Kernel:
  """(image, Cutout's centre) -> new image, for one op at one magnitude, sign
  and image size, its tables and maps built once."""
  arg = argument(op, magnitude)
  if op in SIGNED and negate:
    arg = -arg
  if op in _GEOMETRY:
    return _remap(_pixel_map(_GEOMETRY[op](_F32(arg), height, width), height, width))
  if op == 'Cutout':
    return functools.partial(_cutout, pad=arg)
  if op in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    table = blend_table(arg)
    return functools.partial(_BLENDS[op], table=table)
  if op in ('AutoContrast', 'Equalize'):
    return _per_channel_lut(_autocontrast_lut if op == 'AutoContrast' else _equalize_lut)
  return _lut({'Invert': lambda: 255 - _VALUES,
               'Posterize': lambda: _posterize_lut(arg),
               'Solarize': lambda: np.where(_VALUES < arg % 256, _VALUES, 255 - _VALUES),
               'SolarizeAdd': lambda: np.where(_VALUES < 128, np.clip(_VALUES + arg, 0, 255),
                                               _VALUES)}[op]())


# --- point operations: lookup tables ---

def _lut(table: np.ndarray) -> Kernel:
  table = table.astype(np.uint8)
  return lambda image, _: cv2.LUT(image, table)


def _posterize_lut(bits: int) -> np.ndarray:
  # the shift 8 - bits becomes a uint8 (wrapping) and TensorFlow clamps shifts to 7
  shift = min((8 - bits) % 256, 7)
  return (_VALUES >> shift) << shift


def _histograms(image: np.ndarray) -> list[np.ndarray]:
  return [cv2.calcHist([image], [c], None, [256], [0, 256]).reshape(-1).astype(np.int64)
          for c in range(3)]


def _per_channel_lut(make: Callable[[np.ndarray], np.ndarray]) -> Kernel:
  def fn(image, _):
    luts = [make(h) for h in _histograms(image)]
    return cv2.LUT(image, np.stack(luts, -1).astype(np.uint8)[:, None, :])
  return fn


def _autocontrast_lut(hist: np.ndarray) -> np.ndarray:
  """Each channel stretched to 0..255 in float32 (truncated), as tf does."""
  present = np.flatnonzero(hist)
  lo, hi = _F32(present[0]), _F32(present[-1])
  if not hi > lo:
    return _VALUES
  scale = _F32(255) / (hi - lo)
  offset = -lo * scale
  return np.clip(_VALUES.astype(_F32) * scale + offset, 0, 255).astype(np.uint8)


def _equalize_lut(hist: np.ndarray) -> np.ndarray:
  """PIL's equalize: the step leaves out the count of the brightest value present."""
  present = hist[hist > 0]
  step = (present.sum() - present[-1]) // 255
  if step == 0:
    return _VALUES
  lut = (np.cumsum(hist) + step // 2) // step
  return np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)


# --- blends: image1 + factor * (image2 - image1) in float32, then uint8 ---

def blend_table(factor: float) -> np.ndarray:
  """(256, 256) uint8: [a, b] is big_vision's blend(a, b, factor) of two pixel values."""
  a = _VALUES.astype(_F32)[:, None]
  b = _VALUES.astype(_F32)[None, :]
  if factor == 0.0:
    return np.broadcast_to(a, (256, 256)).astype(np.uint8)
  if factor == 1.0:
    return np.broadcast_to(b, (256, 256)).astype(np.uint8)
  temp = a + _F32(factor) * (b - a)
  # interpolation stays in range and truncates; extrapolation clips first
  return np.clip(temp, 0, 255).astype(np.uint8)


def _blend(degenerate: np.ndarray, image: np.ndarray, table: np.ndarray) -> np.ndarray:
  """blend(degenerate, image) per pixel: one lookup in the (a, b) table."""
  index = (degenerate.astype(np.uint16) << 8) | image
  return table.reshape(-1).take(index)


def grayscale(image: np.ndarray) -> np.ndarray:
  """uint8 (H, W, 1): tf.image.rgb_to_grayscale, float32 operation for operation."""
  x = image.astype(_F32) * _F32(1 / 255)
  w = _GRAY_WEIGHTS
  gray = (x[..., 0] * w[0] + x[..., 1] * w[1]) + x[..., 2] * w[2]
  return (gray * _F32(255.5)).astype(np.uint8)[..., None]


def _color(image, _, table):
  return _blend(grayscale(image), image, table)


def _contrast(image, _, table):
  # big_vision's "mean": a 256-bin histogram's total (every pixel) over 256
  h, w = image.shape[:2]
  mean = np.clip(_F32(h * w) / _F32(256), 0, 255).astype(np.uint8)
  return cv2.LUT(image, table[mean])


def _brightness(image, _, table):
  return cv2.LUT(image, table[0])


def _smoothed(image: np.ndarray) -> np.ndarray:
  """PIL's SMOOTH filter as tf's depthwise conv computes it (float32, taps in
  row-major order), truncated to uint8; the border keeps the image."""
  h, w = image.shape[:2]
  if h < 3 or w < 3:
    return image.copy()
  x = image.astype(_F32)
  acc = np.zeros((h - 2, w - 2, 3), _F32)
  tap = np.empty_like(acc)
  for i in range(3):
    for j in range(3):
      np.multiply(x[i:i + h - 2, j:j + w - 2], _SMOOTH[i, j], out=tap)
      acc += tap
  out = image.copy()
  out[1:-1, 1:-1] = np.clip(acc, 0, 255, out=acc)
  return out


def _sharpness(image, _, table):
  return _blend(_smoothed(image), image, table)


_BLENDS = {'Color': _color, 'Contrast': _contrast, 'Brightness': _brightness,
           'Sharpness': _sharpness}


def _cutout(image: np.ndarray, center: tuple[int, int], pad: int) -> np.ndarray:
  h, w = image.shape[:2]
  row, col = center
  out = image.copy()
  out[max(0, row - pad):min(h, row + pad), max(0, col - pad):min(w, col + pad)] = GRAY
  return out


# --- geometry: tfa.image.transform, nearest pixel, empty pixels gray ---

def _rotation(degrees: np.float32, height: int, width: int) -> list[np.float32]:
  """tfa.image.rotate's transform (about the image centre; counterclockwise
  for positive angles) in float32, with big_vision's degrees-to-radians."""
  radians = degrees * _F32(math.pi / 180.0)
  cos, sin = _F32(math.cos(radians)), _F32(math.sin(radians))
  w1, h1 = _F32(width - 1), _F32(height - 1)
  x_offset = (w1 - (cos * w1 - sin * h1)) / _F32(2)
  y_offset = (h1 - (sin * w1 + cos * h1)) / _F32(2)
  return [cos, -sin, x_offset, sin, cos, y_offset]


_ONE, _ZERO = _F32(1), _F32(0)
_GEOMETRY = {
    'Rotate': _rotation,
    'ShearX': lambda s, h, w: [_ONE, s, _ZERO, _ZERO, _ONE, _ZERO],
    'ShearY': lambda s, h, w: [_ONE, _ZERO, _ZERO, s, _ONE, _ZERO],
    # big_vision translates by [-pixels, 0]; tfa's transform then reads x + pixels
    'TranslateX': lambda p, h, w: [_ONE, _ZERO, p, _ZERO, _ONE, _ZERO],
    'TranslateY': lambda p, h, w: [_ONE, _ZERO, _ZERO, _ZERO, _ONE, p],
}


def _round_half_away(x: np.ndarray) -> np.ndarray:
  """std::round, as ImageProjectiveTransformV3 rounds (numpy's rounds half to even)."""
  return np.copysign(np.floor(np.abs(x) + _F32(0.5)), x)


def _pixel_map(t: list[np.float32], height: int, width: int) -> np.ndarray:
  """int16 (H, W, 2) of the source (x, y) of each output pixel; -1 where it
  falls outside. The output pixel (x, y) reads (t0 x + t1 y + t2, t3 x + t4 y
  + t5), each product and sum rounded to float32 as the kernel computes it."""
  if max(height, width) > np.iinfo(np.int16).max:
    raise ValueError('RandAugment geometry takes images up to 32767 pixels a side')
  y, x = np.mgrid[:height, :width].astype(_F32)
  src_x = _round_half_away((t[0] * x + t[1] * y) + t[2])
  src_y = _round_half_away((t[3] * x + t[4] * y) + t[5])
  inside = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
  return np.where(inside[..., None], np.stack([src_x, src_y], -1), -1).astype(np.int16)


def _remap(pixel_map: np.ndarray) -> Kernel:
  return lambda image, _: cv2.remap(image, pixel_map, None, cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=(GRAY, GRAY, GRAY))
