"""Make tests/fixtures/big_vision/ with big_vision's own code.

Not part of the test suite. Run in an environment with big_vision's
requirements (tensorflow-cpu, jax, flax, optax, ml_collections, einops,
scikit-image, scikit-learn), with a checkout of big_vision:

    python tools/make_big_vision_fixtures.py --big_vision PATH/TO/big_vision_checkout

Model twins (random weights, reduced width and depth) of big_vision's plain
ViT (`big_vision.models.vit`), one per option the loader must read:
- `NAME.npz`: the checkpoint as big_vision writes it (names from
  `utils.tree_flatten_with_names`; `gap_sincos2d_rep` as a training
  checkpoint: `params/...` beside its Adam state `opt/...`, bfloat16 first
  moments, as configs/vit_s16_i1k.py trains);
- `NAME.json`: the `vit.Model` arguments, the image size, the layout and
  `tree`: every parameter name and shape of the model's own `init`, the tree
  `vit.load` restores a file into strictly;
- `NAME.io.npz`: `input` (2, S, S, 3) in [-1, 1], and the model's `logits`
  and `pre_logits` for it (train=False).
Each file is checked to load back with `vit.load` before it is written.
`vit_s16_i1k.json`: the model of configs/vit_s16_i1k.py (the released
vit_s16_i1k_*ep.npz files) at 224, its arguments and its init `tree`.

`area_resize.npz`: big_vision's eval preprocessing `resize_small(256) |
central_crop(224)` (TensorFlow's area resize, then the uint8 cast) on the 28
real photographs that ship with scikit-image and scikit-learn (the ones
tests/fixtures/preprocess uses), decoded with PIL as our eval pipeline
does: `ids`, `shapes` (decoded H, W), `resized` (H, W after resize_small),
`crops` (every 8th pixel of each crop from (3, 3), uint8).
"""
import argparse
import json
import os
import sys

import numpy as np

TWINS = {
    'gap_sincos2d_rep': dict(model=dict(posemb='sincos2d', pool_type='gap', rep_size=True,
                                        depth=1), layout='params+opt'),
    'tok_learn': dict(model=dict(posemb='learn', pool_type='tok'), layout='params'),
    'map_learn_rep24': dict(model=dict(posemb='learn', pool_type='map', rep_size=24,
                                       head_zeroinit=False), layout='params'),
    'scan_0_learn': dict(model=dict(posemb='learn', pool_type='0', scan=True, depth=3),
                         layout='params'),
}
BASE = dict(num_classes=10, patch_size=(4, 4), width=16, depth=2, mlp_dim=32, num_heads=2)
IMAGE_SIZE = 16
CROP_STRIDE, CROP_START = 8, 3


def randomised(params, seed):
  """Every parameter moved off its init (LayerNorm scales off 1, biases and
  the zero-initialised head off 0), at each array's own scale."""
  import jax
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.RandomState(seed)
  out = []
  for a in leaves:
    a = np.asarray(a, np.float32)
    scale = 0.1 if a.ndim <= 1 else 1.0 / np.sqrt(np.prod(a.shape[:-1]))
    out.append((a + scale * rng.standard_normal(a.shape)).astype(np.float32))
  return jax.tree.unflatten(treedef, out)


def make_twin(name, spec, out_dir, vit, utils):
  import jax
  import jax.numpy as jnp
  import optax
  kwargs = {**BASE, **spec['model']}
  model = vit.Model(**kwargs)
  x0 = jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
  init = model.init(jax.random.PRNGKey(0), x0)['params']
  params = randomised(init, seed=sum(map(ord, name)))
  images = np.random.RandomState(1).uniform(-1, 1, (2, IMAGE_SIZE, IMAGE_SIZE, 3))
  images = images.astype(np.float32)
  logits, out = model.apply({'params': params}, images, train=False)
  checkpoint = params
  if spec['layout'] == 'params+opt':
    opt = optax.scale_by_adam(mu_dtype=jnp.bfloat16).init(params)
    checkpoint = {'params': params, 'opt': opt}
  names_values, _ = utils.tree_flatten_with_names(checkpoint)
  arrays = {k: np.asarray(v) for k, v in names_values}
  path = os.path.join(out_dir, f'{name}.npz')
  np.savez(path, **arrays)
  # big_vision's loader takes it back, strictly, into the same model
  restored = vit.load(init, path, kwargs)
  again, _ = model.apply({'params': restored}, images, train=False)
  np.testing.assert_array_equal(np.asarray(again), np.asarray(logits))
  tree = {k: list(np.shape(v)) for k, v in utils.tree_flatten_with_names(init)[0]}
  meta = dict(model=kwargs, image_size=IMAGE_SIZE, layout=spec['layout'], tree=tree,
              versions=versions())
  with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  np.savez(os.path.join(out_dir, f'{name}.io.npz'), input=images,
           logits=np.asarray(logits, np.float32),
           pre_logits=np.asarray(out['pre_logits'], np.float32))
  print(f'{name:20s} {os.path.getsize(path):7,d} bytes, {len(arrays)} arrays')


def make_s16_tree(out_dir, vit, utils):
  """The released S/16's tree, from shapes alone (nothing allocated)."""
  import jax
  import jax.numpy as jnp
  from big_vision.configs import vit_s16_i1k
  kwargs = dict(vit_s16_i1k.get_config().model.to_dict(), num_classes=1000)
  model = vit.Model(**kwargs)
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)['params']
  tree = {k: list(v.shape) for k, v in utils.tree_flatten_with_names(shapes)[0]}
  with open(os.path.join(out_dir, 'vit_s16_i1k.json'), 'w') as f:
    json.dump(dict(model=kwargs, image_size=224, tree=tree, versions=versions()), f,
              indent=1, sort_keys=True)


def photos():
  """(id, RGB uint8 array) of the photos, decoded as our eval pipeline does."""
  import skimage.data
  from PIL import Image
  from sklearn.datasets import load_sample_images
  folder = os.path.dirname(skimage.data.__file__)
  for name in sorted(os.listdir(folder)):
    if name.endswith(('.png', '.jpg')):
      img = Image.open(os.path.join(folder, name))
      img.load()
      if min(img.size) >= 96:
        yield f'skimage:{name}', np.asarray(img.convert('RGB'))
  sample = load_sample_images()
  for path, img in sorted(zip(sample.filenames, sample.images)):
    yield f'sklearn:{os.path.basename(path)}', np.asarray(img)


def make_area_fixture(out_dir, ops_image):
  import tensorflow as tf
  resize_small = ops_image.get_resize_small(256)
  central_crop = ops_image.get_central_crop(224)
  ids, shapes, resized, crops = [], [], [], []
  for ident, pixels in photos():
    small = resize_small({'image': tf.constant(pixels)})['image']
    crop = central_crop({'image': small})['image'].numpy()
    assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
    ids.append(ident)
    shapes.append(pixels.shape[:2])
    resized.append(small.shape[:2])
    crops.append(crop[CROP_START::CROP_STRIDE, CROP_START::CROP_STRIDE])
  np.savez_compressed(os.path.join(out_dir, 'area_resize.npz'), ids=np.array(ids),
                      shapes=np.array(shapes), resized=np.array(resized), crops=np.stack(crops))
  print(f'area_resize: {len(ids)} photos')


def versions():
  import flax
  import jax
  import tensorflow as tf
  return dict(jax=jax.__version__, flax=flax.__version__, tensorflow=tf.__version__)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--big_vision', required=True, help='a checkout of google-research/big_vision '
                 '(the folder holding the big_vision package)')
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'tests',
                                                 'fixtures', 'big_vision'))
  args = p.parse_args()
  sys.path.insert(0, os.path.abspath(args.big_vision))
  from big_vision import utils
  from big_vision.models import vit
  from big_vision.pp import ops_image
  os.makedirs(args.out, exist_ok=True)
  for name, spec in TWINS.items():
    make_twin(name, spec, args.out, vit, utils)
  make_s16_tree(args.out, vit, utils)
  make_area_fixture(args.out, ops_image)


if __name__ == '__main__':
  main()
