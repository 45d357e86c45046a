"""Small real-image folders and a tiny self-describing checkpoint for eval tests."""
import os

import numpy as np
from PIL import Image

import vit_jax
from vit_jax.checkpoints import save_params
from conftest import jit_init

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
  model = vit_jax.models.registry.module_from_config(cfg)
  params = jit_init(model, np.zeros((1, 32, 32, 3)))['params']
  params['head']['kernel'] = np.random.RandomState(1).randn(32, 3).astype(np.float32)
  save_params(path, params, cfg)
  return cfg, params


def tfds_twin(data_dir: str, folder_root: str, name: str = 'vit_jax_test_images',
              split: str = 'validation', real=None) -> str:
  """The folder's images and labels, in its order, prepared as a TFDS
  dataset (ArrayRecord, one split) under `data_dir`; no TF needed. With
  `real` (a list of label lists, one per image) its features are
  imagenet2012_real's: `original_label` and the multi-label `real_label`."""
  import io
  import tensorflow_datasets as tfds
  from vit_jax.data.sources import open_source
  folder = open_source(f'folder:{folder_root}')
  dataset_name = name
  label = tfds.features.ClassLabel(names=folder.class_names)
  features = ({'image': tfds.features.Image(), 'label': label} if real is None else
              {'image': tfds.features.Image(), 'original_label': label,
               'real_label': tfds.features.Sequence(label)})

  class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version('1.0.0')
    name = dataset_name

    def _info(self):
      return tfds.core.DatasetInfo(builder=self,
                                   features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
      return {split: self._generate_examples()}

    def _generate_examples(self):
      for i in range(len(folder)):
        r = folder[i]
        labels = ({'label': r['label']} if real is None else
                  {'original_label': r['label'], 'real_label': real[i]})
        yield i, {'image': io.BytesIO(r['image']), **labels}

  Builder(data_dir=data_dir, file_format='array_record').download_and_prepare()
  return name
