"""ImageNet-like JPEGs from the photos that ship with scikit-image and
scikit-learn: nothing to download, the same set on every machine.

ImageNet's training JPEGs are mostly 500 pixels on the long side (500x375,
375x500, 500x333), about 110 KB on average at the quality Flickr served;
these are random windows of the sample photos resized to those shapes and
encoded with 4:2:0 chroma at quality 96 (the sample photos are smoother
than Flickr's: at this quality they come to about 70 KB each). What a decoder
costs depends on the pixel count and the entropy-coded size, which these
match.
"""
from __future__ import annotations

import io
import os
from typing import Iterator

import numpy as np
from PIL import Image

SHAPES = ((500, 375), (375, 500), (500, 333))
_SKIMAGE = ('astronaut', 'chelsea', 'coffee', 'hubble_deep_field', 'immunohistochemistry',
            'retina', 'rocket')


def sample_photos() -> Iterator[Image.Image]:
  """RGB photographs of scikit-image (and scikit-learn, when installed)."""
  import skimage.data
  for name in _SKIMAGE:
    yield Image.fromarray(getattr(skimage.data, name)()).convert('RGB')
  try:
    import sklearn.datasets
  except ImportError:
    return
  for name in ('china.jpg', 'flower.jpg'):
    yield Image.fromarray(sklearn.datasets.load_sample_image(name))


def imagenet_like_jpegs(count: int, seed: int = 0, quality: int = 96) -> list[bytes]:
  """`count` encoded JPEGs of ImageNet's common shapes, drawn from the photos."""
  photos = list(sample_photos())
  rng = np.random.default_rng(seed)
  out = []
  for i in range(count):
    photo = photos[i % len(photos)]
    w, h = SHAPES[int(rng.integers(len(SHAPES)))]
    # a random window of the photo with the target's aspect ratio, 60-100% of the side
    side = rng.uniform(0.6, 1.0)
    cw = min(photo.width, int(side * min(photo.width, photo.height * w / h)))
    ch = min(photo.height, int(cw * h / w))
    left = int(rng.integers(0, photo.width - cw + 1))
    top = int(rng.integers(0, photo.height - ch + 1))
    img = photo.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch))
    buf = io.BytesIO()
    img.save(buf, 'JPEG', quality=quality, subsampling='4:2:0')
    out.append(buf.getvalue())
  return out


def write_folder(root: str, jpegs: list[bytes], classes: int = 10) -> str:
  """The JPEGs as a `folder:` dataset (one sub-folder per class)."""
  for i, data in enumerate(jpegs):
    folder = os.path.join(root, f'class_{i % classes:03d}')
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f'{i:06d}.jpg'), 'wb') as f:
      f.write(data)
  return root
