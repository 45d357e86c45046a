"""scikit-learn's handwritten digits as an image folder (the quickstart data).

1797 8x8 grayscale digits ship inside scikit-learn; on first use they are
written once as 32x32 PNGs into `train/<digit>/` and `test/<digit>/` (a fixed,
stratified 20% test split), so the usual folder pipeline reads them.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

SIZE = 32
TEST_FRACTION = 0.2


def default_root() -> str:
  return os.path.join(os.path.expanduser('~'), '.cache', 'vit_jax', 'digits')


def ensure_digits(root: str) -> str:
  """Write the folder if it is not complete yet; returns `root`."""
  done = os.path.join(root, '.complete')
  if os.path.exists(done):
    return root
  from sklearn.datasets import load_digits
  digits = load_digits()
  rng = np.random.default_rng(0)
  tmp = f'{root}.tmp-{os.getpid()}'
  for label in range(10):
    idx = np.flatnonzero(digits.target == label)
    idx = idx[rng.permutation(len(idx))]
    n_test = int(round(len(idx) * TEST_FRACTION))
    for split, rows in (('test', idx[:n_test]), ('train', idx[n_test:])):
      folder = os.path.join(tmp, split, str(label))
      os.makedirs(folder, exist_ok=True)
      for i in rows:
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels).resize((SIZE, SIZE), Image.BICUBIC).save(
            os.path.join(folder, f'{i:04d}.png'))
  open(os.path.join(tmp, '.complete'), 'w').close()
  if os.path.exists(root):  # an incomplete earlier attempt
    import shutil
    shutil.rmtree(root)
  os.makedirs(os.path.dirname(root) or '.', exist_ok=True)
  os.replace(tmp, root)
  return root
