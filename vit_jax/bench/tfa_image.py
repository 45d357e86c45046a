"""A stand-in for `tensorflow_addons.image`, which big_vision's RandAugment imports.

tensorflow_addons is retired and does not install beside current tensorflow;
its image transforms were thin wrappers over TensorFlow's own
ImageProjectiveTransformV3 kernel. This module restates the three that
big_vision's `pp/archive/autoaugment.py` calls (`transform`, `rotate`,
`translate`) with tfa's defaults (nearest pixel, constant fill 0) and its
transform conventions: the 8 numbers [a0, a1, a2, b0, b1, b2, c0, c1] map an
output pixel (x, y) to the input pixel ((a0 x + a1 y + a2) / k, (b0 x + b1 y
+ b2) / k), k = c0 x + c1 y + 1, pixel centres at integer coordinates.
`load_autoaugment(checkout)` imports big_vision's module from a checkout
with this stand-in in place. Needs tensorflow, imported only inside functions.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types


def transform(images, transforms, interpolation='nearest', fill_mode='constant',
              output_shape=None, name=None, fill_value=0.0):
  """Images (HWC or NHWC) through projective transforms ([8] or [N, 8])."""
  del name
  import tensorflow as tf
  images = tf.convert_to_tensor(images)
  rank = images.shape.rank
  batch = images[None] if rank == 3 else images
  transforms = tf.convert_to_tensor(transforms, tf.float32)
  if transforms.shape.rank == 1:
    transforms = transforms[None]
  if output_shape is None:
    output_shape = tf.shape(batch)[1:3]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=batch, transforms=transforms, output_shape=tf.cast(output_shape, tf.int32),
      fill_value=tf.cast(fill_value, tf.float32), interpolation=interpolation.upper(),
      fill_mode=fill_mode.upper())
  return out[0] if rank == 3 else out


def angles_to_projective_transforms(angles, image_height, image_width):
  """[N, 8] transforms rotating counterclockwise by `angles` (radians) about
  the image centre ((W - 1) / 2, (H - 1) / 2)."""
  import tensorflow as tf
  angles = tf.reshape(tf.convert_to_tensor(angles, tf.float32), [-1])
  h, w = tf.cast(image_height, tf.float32), tf.cast(image_width, tf.float32)
  cos, sin = tf.math.cos(angles), tf.math.sin(angles)
  x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
  y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
  zeros = tf.zeros_like(angles)
  return tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], axis=1)


def rotate(images, angles, interpolation='nearest', fill_mode='constant', name=None,
           fill_value=0.0):
  import tensorflow as tf
  images = tf.convert_to_tensor(images)
  shape = tf.shape(images)
  h, w = (shape[0], shape[1]) if images.shape.rank == 3 else (shape[1], shape[2])
  return transform(images, angles_to_projective_transforms(angles, h, w), interpolation,
                   fill_mode, None, name, fill_value)


def translations_to_projective_transforms(translations):
  """[N, 8] transforms moving the image by (dx, dy): output (x, y) reads (x - dx, y - dy)."""
  import tensorflow as tf
  t = tf.reshape(tf.convert_to_tensor(translations, tf.float32), [-1, 2])
  ones, zeros = tf.ones_like(t[:, 0]), tf.zeros_like(t[:, 0])
  return tf.stack([ones, zeros, -t[:, 0], zeros, ones, -t[:, 1], zeros, zeros], axis=1)


def translate(images, translations, interpolation='nearest', fill_mode='constant', name=None,
              fill_value=0.0):
  return transform(images, translations_to_projective_transforms(translations), interpolation,
                   fill_mode, None, name, fill_value)


def install() -> None:
  """Make `from tensorflow_addons import image` find this module."""
  if 'tensorflow_addons' in sys.modules:
    return
  package = types.ModuleType('tensorflow_addons')
  package.image = sys.modules[__name__]
  sys.modules['tensorflow_addons'] = package
  sys.modules['tensorflow_addons.image'] = sys.modules[__name__]


def load_autoaugment(checkout: str):
  """big_vision's `pp/archive/autoaugment.py` (or the older `pp/autoaugment.py`)
  from a checkout of google-research/big_vision, imported with this stand-in."""
  for relative in ('big_vision/pp/archive/autoaugment.py', 'big_vision/pp/autoaugment.py'):
    path = os.path.join(checkout, relative)
    if os.path.isfile(path):
      break
  else:
    raise ValueError(f'{checkout} is not a checkout of google-research/big_vision (no '
                     'big_vision/pp/archive/autoaugment.py there)')
  install()
  spec = importlib.util.spec_from_file_location('big_vision_autoaugment', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
