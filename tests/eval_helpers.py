"""Small real-image folders and a tiny self-describing checkpoint for eval tests."""
import os

import jax
import numpy as np
from PIL import Image

import vit_jax
from vit_jax.checkpoints import save_params

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
            mlp_dim=64, num_classes=3)


def photo_folder(root: str, counts=(5, 4, 4), corrupt: bool = False) -> str:
  """Class folders of crops of real photos (skimage), mixed formats and modes."""
  import skimage.data
  photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
            skimage.data.rocket()]
  formats = [('png', 'RGB'), ('jpg', 'RGB'), ('png', 'L'), ('png', 'RGBA'), ('jpg', 'CMYK')]
  k = 0
  for c, n in enumerate(counts):
    os.makedirs(os.path.join(root, f'class_{c}'), exist_ok=True)
    for i in range(n):
      photo = photos[(c + i) % len(photos)]
      h, w = photo.shape[:2]
      crop = photo[(17 * k) % (h // 2):, (29 * k) % (w // 2):][: 60 + 7 * i, : 80 + 5 * c]
      ext, mode = formats[k % len(formats)]
      Image.fromarray(crop).convert(mode).save(os.path.join(root, f'class_{c}', f'{i}.{ext}'))
      k += 1
  if corrupt:
    with open(os.path.join(root, 'class_1', 'broken.jpg'), 'wb') as f:
      f.write(b'\xff\xd8\xff\xe0 not really a jpeg')
  return root


def tiny_checkpoint(path: str) -> tuple:
  """A random tiny ViT saved in our orbax format: (config, params)."""
  cfg = vit_jax.get_model_config('vit_base_patch16_224', **TINY)
  model = vit_jax.registry.module_from_config(cfg)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)))['params']
  params['head']['kernel'] = np.random.RandomState(1).randn(32, 3).astype(np.float32)
  save_params(path, params, cfg)
  return cfg, params
