"""predict.py: top-k from the model's softmax, and the attention rollout."""
import jax
import numpy as np
import pytest
from PIL import Image

import vit_jax
from vit_jax.checkpoints import save_params
from vit_jax.data.preprocess import decode_rgb, eval_crop, eval_crop_box, normalize
from vit_jax.cli import predict
from conftest import jit_apply, jit_init


@pytest.fixture(scope='module')
def tiny1k(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('predict')
  cfg = vit_jax.get_model_config('vit_base_patch16_224', image_size=64, hidden_size=32,
                                 num_layers=2, num_heads=2, mlp_dim=64)
  model = vit_jax.models.registry.module_from_config(cfg)
  params = jit_init(model, np.zeros((1, 64, 64, 3)))['params']
  params['head']['kernel'] = np.random.RandomState(1).randn(32, 1000).astype(np.float32)
  save_params(str(tmp / 'ckpt'), params, cfg)
  import skimage.data
  Image.fromarray(skimage.data.chelsea()).save(tmp / 'cat.png')
  Image.fromarray(skimage.data.rocket()).convert('L').save(tmp / 'rocket.jpg')
  return tmp, cfg, model, params


def test_top5_names_and_probabilities(tiny1k, capsys):
  tmp, cfg, model, params = tiny1k
  images = [str(tmp / 'cat.png'), str(tmp / 'rocket.jpg')]
  assert predict.main([*images, '--checkpoint', str(tmp / 'ckpt')]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 12 and lines[0] == images[0] and lines[6] == images[1]
  names = predict.imagenet_class_names()
  assert len(names) == 1000 and names[207] == 'golden retriever'
  x = np.stack([normalize(eval_crop(decode_rgb(p), 64, cfg.crop_pct), cfg.mean, cfg.std)
                for p in images])
  probs = np.asarray(jax.nn.softmax(jit_apply(model, {'params': params}, x)))
  for b in range(2):
    rows = [line.split(None, 1) for line in lines[6 * b + 1: 6 * b + 6]]
    got = [float(p) for p, _ in rows]
    top = np.argsort(-probs[b])[:5]
    assert [n for _, n in rows] == [names[c] for c in top]
    np.testing.assert_allclose(got, probs[b][top], atol=1e-4)
    assert got == sorted(got, reverse=True) and sum(got) <= 1.0


def test_attention_map_is_saved_at_the_image_size_over_the_crop(tiny1k):
  tmp, cfg, *_ = tiny1k
  out = tmp / 'att.png'
  assert predict.main([str(tmp / 'cat.png'), '--checkpoint', str(tmp / 'ckpt'),
                       '--attention_map', str(out)]) == 0
  picture = np.asarray(Image.open(tmp / 'cat.png'), np.float32)
  saved = np.asarray(Image.open(out), np.float32)
  assert saved.shape == picture.shape == (300, 451, 3)
  # resized to 106 x 71, the 64 x 64 crop at (21, 4): x 21 * 451 / 106 = 89.4
  # to 85 * 451 / 106 = 361.6, y 4 * 300 / 71 = 16.9 to 68 * 300 / 71 = 287.3
  left, top, right, bottom = eval_crop_box(451, 300, cfg.image_size, cfg.crop_pct)
  assert (round(left), round(right), round(top), round(bottom)) == (89, 362, 17, 287)
  for outside in (np.s_[:, :88], np.s_[:, 363:], np.s_[:16]):
    np.testing.assert_allclose(saved[outside], np.floor(picture[outside] * 0.4), atol=1)
  gain = saved[18:286, 90:361].sum(-1) / (picture[18:286, 90:361].sum(-1) + 1e-6)
  assert gain.max() > 0.95 and gain.min() < 0.6  # the map varies over the crop


@pytest.mark.parametrize('name, grid', [('vit_base_patch16_224', 4),
                                         ('vit_base_resnet50_384', 2)])
def test_rollout_of_uniform_attention_is_uniform_and_matches_the_formula(name, grid):
  """Zero key projections make every attention row uniform (1/T); the rollout
  is then ((U + I) / 2) ** L, whose class row over the patches is flat. The
  hybrid's grid comes from its stem's stride (16)."""
  cfg = vit_jax.get_model_config(name, image_size=32 * grid // 2 if grid == 2 else 64,
                                 hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64,
                                 num_classes=5, **({'resnet': (1, 1, 1)} if grid == 2 else {}))
  model = vit_jax.models.registry.module_from_config(cfg)
  x = np.random.RandomState(0).randn(2, cfg.image_size, cfg.image_size, 3).astype(np.float32)
  flat = jax.tree.map(np.array, jax.jit(model.init)(jax.random.PRNGKey(0), x[:1])['params'])
  for i in range(cfg.num_layers):
    key = flat['Transformer'][f'encoderblock_{i}']['MultiHeadDotProductAttention_0']['key']
    key['kernel'][:] = 0
    key['bias'][:] = 0
  maps = predict.attention_rollout(model, flat, x, cfg)
  t = 1 + grid * grid
  a = (np.full((t, t), 1 / t) + np.eye(t)) / 2
  expected = np.linalg.matrix_power(a, cfg.num_layers)[0, 1:].reshape(grid, grid)
  assert maps.shape == (2, grid, grid)
  np.testing.assert_allclose(maps[0], expected, rtol=1e-5)
  np.testing.assert_allclose(maps[1], expected, rtol=1e-5)


@pytest.mark.parametrize('classifier', ['map', '0'])
def test_rollout_is_read_where_the_classifier_reads(classifier):
  """Uniform attention everywhere (zero key projections, the pooling probe's
  too) and no class token: ((U + I) / 2) ** L over the patches alone, read
  at the first patch ('0') or through the probe's uniform attention ('map',
  the mean row)."""
  cfg = vit_jax.get_model_config('vit_base_patch16_224', image_size=64, hidden_size=32,
                                 num_layers=2, num_heads=2, mlp_dim=64, num_classes=5,
                                 classifier=classifier)
  model = vit_jax.models.registry.module_from_config(cfg)
  x = np.random.RandomState(0).randn(1, 64, 64, 3).astype(np.float32)
  rng = np.random.RandomState(1)
  params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32),
                        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params'])
  attentions = [params['Transformer'][f'encoderblock_{i}']['MultiHeadDotProductAttention_0']
                for i in range(cfg.num_layers)]
  if classifier == 'map':
    attentions.append(params['MAPHead_0']['MultiHeadDotProductAttention_0'])
  for attn in attentions:
    attn['key']['kernel'][:] = 0
    attn['key']['bias'][:] = 0
  t = 16
  rollout = np.linalg.matrix_power((np.full((t, t), 1 / t) + np.eye(t)) / 2, cfg.num_layers)
  expected = rollout[0] if classifier == '0' else rollout.mean(axis=0)
  maps = predict.attention_rollout(model, params, x, cfg)
  np.testing.assert_allclose(maps[0], expected.reshape(4, 4), rtol=1e-5)


def test_unreadable_image_is_one_line(tiny1k, capsys):
  tmp, *_ = tiny1k
  assert predict.main([str(tmp / 'missing.png'), '--checkpoint', str(tmp / 'ckpt')]) == 1
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and 'missing.png' in err and '\n' not in err
