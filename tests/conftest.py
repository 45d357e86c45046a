"""Shared test helpers: the reference twins shipped under tests/fixtures."""
import functools
import json
import os

# the test processes compute on the CPU; an installed libtpu (for the TPU
# compile tests) is then not started as a backend, by them or their children
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# One XLA compilation cache for the run, shared by the test workers and the
# train.py/eval.py processes they start, which compile the same tiny programs
# again and again; the size limit turns on the cache's file lock.
_OWN_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix='vit_jax_tests_xla_cache_')
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_OWN_CACHE,
                    JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


# XLA:CPU's code generation at its lowest optimisation level: the tests'
# programs are tiny and each runs a few times, so compiling is their cost
# (about half of it goes); numerics do not depend on it.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
if TEST_XLA_FLAGS not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a test's child process on `devices` simulated CPU devices."""
  return f'{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}'


def pytest_unconfigure(config):
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The files that take a minute or more of CPU each, longest first. The suite
# hands whole files to its workers in collection order: started last, one of
# these would run alone at the end while the other worker idles.
LONG_FILES = ('plan/test_plan.py', 'backends/test_cpu_layers.py', 'train/test_trainer.py',
              'train/test_cloud_storage.py', 'models/test_vit.py', 'launch/test_launch_hosts.py',
              'train/test_train_cli.py', 'train/test_resume.py', 'train/test_scale.py',
              'eval/test_eval_cli.py', 'launch/test_launch_tpu.py')


def pytest_collection_modifyitems(items):
  """LONG_FILES first, in that order; the rest as collected."""
  def rank(item):
    path = item.nodeid.split('::')[0]
    return next((i for i, f in enumerate(LONG_FILES) if path.endswith(f)), len(LONG_FILES))
  items.sort(key=rank)

DATA = os.path.join(os.path.dirname(__file__), 'fixtures')
CARD_MODELS = ('vit_small_patch16_224', 'vit_base_patch16_224', 'vit_base_patch16_384',
               'vit_base_patch32_384', 'vit_large_patch16_224', 'vit_large_patch16_384',
               'vit_base_resnet50_384')
# Parameter counts of the card's models at 1000 classes (the card's figures).
CARD_COUNTS = {
    'vit_small_patch16_224': 48_754_408, 'vit_base_patch16_224': 86_567_656,
    'vit_base_patch16_384': 86_859_496, 'vit_base_patch32_384': 88_297_192,
    'vit_large_patch16_224': 304_326_632, 'vit_large_patch16_384': 304_715_752,
    'vit_base_resnet50_384': 98_950_952,
}
# Google twin file -> the registered model whose architecture it shares.
GOOGLE_TWINS = {'ViT-B_16-repr': 'vit_base_patch16_224_in21k',
                'ViT-B_32': 'vit_base_patch32_224',
                'R50+ViT-B_16': 'vit_base_resnet50_224'}


def timm_twin(name: str) -> tuple[dict, dict]:
  """(config overrides of the small timm twin, its input/logits/pre_logits)."""
  with open(os.path.join(DATA, 'timm', f'{name}.json')) as f:
    meta = json.load(f)
  c = meta['config']
  overrides = dict(image_size=c['img_size'], patch_size=c['patch_size'],
                   hidden_size=c['embed_dim'], num_layers=c['depth'], num_heads=c['num_heads'],
                   mlp_dim=int(c['embed_dim'] * c.get('mlp_ratio', 4.0)),
                   num_classes=meta['num_classes'])
  if c.get('qk_scale') == 'embed_dim**-0.5':
    overrides['attn_scale'] = c['embed_dim'] ** -0.5
  if c.get('hybrid_layers'):
    overrides['resnet'] = tuple(c['hybrid_layers'])
  io = dict(np.load(os.path.join(DATA, 'timm', f'{name}.npz')))
  io['input_nhwc'] = io.pop('input_nchw').transpose(0, 2, 3, 1)
  return overrides, io


def google_twin(name: str) -> tuple[dict, dict]:
  """(config overrides of the small official-code twin, its input/outputs)."""
  with open(os.path.join(DATA, 'google', f'{name}.json')) as f:
    meta = json.load(f)
  c = meta['config']
  overrides = dict(image_size=meta['image_size'], patch_size=c['patches']['size'][0],
                   hidden_size=c['hidden_size'], num_layers=c['transformer']['num_layers'],
                   num_heads=c['transformer']['num_heads'], mlp_dim=c['transformer']['mlp_dim'],
                   num_classes=meta['num_classes'],
                   representation_size=c['representation_size'],
                   resnet=tuple(c['resnet']['num_layers']) if c['resnet'] else None)
  return overrides, dict(np.load(os.path.join(DATA, 'google', f'{name}.io.npz')))


def data_path(*parts: str) -> str:
  return os.path.join(DATA, *parts)


# 'squash' crops checked against timm's: key -> (image size, crop_pct, interpolation)
SQUASH_SETTINGS = {'224_1.0_bilinear': (224, 1.0, 'bilinear'),
                   '224_0.875_bicubic': (224, 0.875, 'bicubic'),
                   '384_1.0_bicubic': (384, 1.0, 'bicubic')}


def synthetic_photos():
  """(id, PIL image): photo-like RGB images of several shapes (blocks, a
  gradient, noise) made with numpy alone, so any environment rebuilds them
  exactly; tools/make_hf_fixtures.py cropped them with timm."""
  from PIL import Image
  for i, (w, h) in enumerate(((500, 333), (333, 500), (97, 131), (640, 480), (256, 256),
                              (1000, 60))):
    rng = np.random.RandomState(i)
    blocks = np.kron(rng.randint(0, 256, (h // 16 + 1, w // 16 + 1, 3)), np.ones((16, 16, 1)))
    gradient = 255 * np.arange(w)[None, :, None] / w
    img = 0.6 * blocks[:h, :w] + 0.3 * gradient + rng.randint(-25, 26, (h, w, 3))
    yield f'synthetic_{w}x{h}', Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=None)
def _sklearn_photos() -> dict:
  from sklearn.datasets import load_sample_images
  sample = load_sample_images()
  return {os.path.basename(f): a for f, a in zip(sample.filenames, sample.images)}


def fixture_photo(ident: str):
  """A photo of the preprocessing fixtures by its id (`skimage:<file>` or
  `sklearn:<file>`), decoded as the eval pipeline decodes it."""
  import skimage.data
  from PIL import Image
  from vit_jax.data.preprocess import decode_rgb
  kind, name = str(ident).split(':', 1)
  if kind == 'skimage':
    return decode_rgb(os.path.join(os.path.dirname(skimage.data.__file__), name))
  return Image.fromarray(_sklearn_photos()[name])


@pytest.fixture
def tiny_overrides():
  """A ViT small enough for CLI tests that run in a second."""
  return dict(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
              mlp_dim=64, num_classes=10)


def textbook_attention(q, k, v, scale):
  """softmax(q k^T * scale) v in float64, for (batch, tokens, heads, head_dim) arrays."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum('bqhd,bkhd->bhqk', q, k) * scale
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum('bhqk,bkhd->bqhd', w, v)


def jit_init(module, *args, seed: int = 0, **kwargs) -> dict:
  """`module.init` as one jitted program: run eagerly, each of its operations
  compiles on its own (about 10 s for a two-layer ViT, against 3 s)."""
  import jax
  return jax.jit(functools.partial(module.init, **kwargs))(jax.random.PRNGKey(seed), *args)


def random_params(cfg, seed: int = 0) -> dict:
  """Random float32 weights of a config's shapes, without compiling an init:
  scales near 1, the rest over the square root of the leading dimension."""
  from flax import traverse_util
  from vit_jax.checkpoints.formats import expected_shapes
  rng = np.random.RandomState(seed)
  flat = {}
  for key, shape in expected_shapes(cfg).items():
    v = rng.randn(*shape).astype(np.float32)
    v = 1 + 0.1 * v if key.endswith('scale') else v / np.sqrt(max(shape[0], 1))
    flat[key] = v.astype(np.float32)  # NumPy 2 promotes v / np.float64 to float64
  return traverse_util.unflatten_dict(flat, sep='/')


def jit_apply(module, variables, *args, **kwargs):
  """`module.apply` as one jitted program (keyword arguments are fixed)."""
  import jax
  return jax.jit(functools.partial(module.apply, **kwargs))(variables, *args)

