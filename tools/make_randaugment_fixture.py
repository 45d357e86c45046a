"""Write tests/fixtures/randaugment/big_vision_ops.npz: big_vision's RandAugment
ops, run by TensorFlow, on a few images at many magnitudes.

Not part of the test suite (tensorflow is not a dependency). Run in an
environment with tensorflow and this package importable, given a checkout of
google-research/big_vision:

    python tools/make_randaugment_fixture.py --big-vision PATH [--out FILE]

Each op is big_vision's own function with its own arguments
(`_parse_policy_info`, its magnitude-to-argument table, gray fill), traced
as a graph function as tf.data runs it; `tensorflow_addons.image` is the
stand-in in vit_jax.bench.tfa_image. The random sign of a signed op and
Cutout's centre are fixed by replacing big_vision's draws with given values.
The small images keep their outputs at magnitude 10; every other output is
kept as its SHA-256 (the fixture stays small, the comparison exact).
"""
import argparse
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from vit_jax.bench import tfa_image  # noqa: E402

OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'Color',
       'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
       'Cutout', 'SolarizeAdd')
SIGNED = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
MAGNITUDES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12.5, 15, 17, 20, 22.5, 25, 30)
# Cutout's centre as fractions of (height, width): the middle and near two corners
CENTERS = ((0.5, 0.5), (0.05, 0.9), (0.97, 0.02))


def images() -> dict:
  """Photo-like content (blocks, a gradient, noise, a flat area), a small
  odd-sized one, and a low-contrast one with a constant channel."""
  rng = np.random.default_rng(33)

  def photo(h, w):
    blocks = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))
    gradient = 255 * np.arange(w)[None, :, None] / w
    img = 0.6 * blocks[:h, :w] + 0.3 * gradient + rng.integers(-20, 21, (h, w, 3))
    img[: h // 4, : w // 4] = rng.integers(0, 256, 3)  # a flat corner
    return np.clip(img, 0, 255).astype(np.uint8)
  low = rng.integers(100, 141, (31, 33, 3)).astype(np.uint8)
  low[..., 2] = 77
  return {'photo224': photo(224, 224), 'photo48x64': photo(48, 64), 'low31x33': low}


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--big-vision', required=True, help='a checkout of google-research/big_vision')
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests',
                                               'fixtures', 'randaugment', 'big_vision_ops.npz'))
  args = p.parse_args()
  import tensorflow as tf
  aa = tfa_image.load_autoaugment(args.big_vision)
  fixed = {'negate': False, 'center': (0, 0), 'draws': []}
  aa._randomly_negate_tensor = lambda t: -t if fixed['negate'] else t  # pylint: disable=protected-access

  class Draws:  # tensorflow.compat.v1 with Cutout's centre draws fixed
    def __getattr__(self, name):
      return getattr(tf.compat.v1, name)

    @staticmethod
    def random_uniform(shape, minval=0, maxval=None, dtype=tf.float32, **_):
      assert dtype == tf.int32 and not shape, 'only Cutout draws here'
      return tf.constant(fixed['draws'].pop(0), tf.int32)  # its row, then its column
  aa.tf = Draws()
  hparams = aa.HParams(cutout_const=40, translate_const=100)

  out = {}
  for image_name, image in images().items():
    out[f'{image_name}/input'] = image
    h, w = image.shape[:2]
    for op in OPS:
      for magnitude in MAGNITUDES:
        variants = [('', {})]
        if op in SIGNED:
          variants = [('+', {'negate': False}), ('-', {'negate': True})]
        if op == 'Cutout':
          variants = [(f'@{int(r * h)},{int(c * w)}', {'center': (int(r * h), int(c * w))})
                      for r, c in CENTERS]
        for tag, setting in variants:
          fixed.update(setting)
          fixed['draws'] = list(fixed['center'])
          func, _, fargs = aa._parse_policy_info(  # pylint: disable=protected-access
              op, 0.5, float(magnitude), [128] * 3, hparams)
          result = tf.function(lambda x, f=func, a=fargs: f(x, *a))(tf.constant(image))
          result = np.asarray(result.numpy(), np.uint8)
          key = f'{image_name}/{op}/{magnitude:g}{tag}'
          if image_name != 'photo224' and magnitude == 10:
            out[key] = result
          else:
            out[key] = np.frombuffer(hashlib.sha256(result.tobytes()).digest(), np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  np.savez_compressed(args.out, **out)
  print(f'wrote {len(out)} arrays to {args.out} (tensorflow {tf.__version__})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
