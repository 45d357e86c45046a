"""Every recipe has the keys scripts rely on, and the numbers of its source:
the card's, big_vision's vit_s16_i1k.py (bv_plain) and vit_i1k.py (augreg)."""
import importlib

import pytest

from vit_jax.train import config_keys

DESIGN_KEYS = ('model', 'model_overrides', 'dataset', 'data_dir', 'image_size', 'batch_size',
               'total_steps', 'warmup_steps', 'optimizer', 'lr', 'momentum', 'weight_decay',
               'grad_clip_norm', 'label_smoothing', 'accum_steps', 'dtype', 'pretrained',
               'checkpoint_every', 'keep_checkpoints', 'eval_every', 'log_every', 'seed')
CARD = importlib.import_module('configs.card').CARD


def _all_configs():
  yield 'quickstart', importlib.import_module('configs.quickstart').get_config()
  yield 'bv_plain', importlib.import_module('configs.bv_plain').get_config()
  for arg in ('S/16', 'B/16,strong2'):
    yield f'augreg:{arg}', importlib.import_module('configs.augreg').get_config(arg)
  for model in CARD:
    yield f'card:{model}', importlib.import_module('configs.card').get_config(model)
    yield f'finetune:{model}', importlib.import_module('configs.finetune').get_config(model)


@pytest.mark.parametrize('name, config', list(_all_configs()))
def test_every_config_has_the_design_keys(name, config):
  for key in DESIGN_KEYS:
    assert key in config, f'{name} lacks {key}'
  assert config.optimizer in ('sgd', 'adamw') and config.batch_size > 0


def test_card_recipes_carry_the_card_numbers():
  card = importlib.import_module('configs.card')
  b16 = card.get_config('vit_base_patch16_224')
  assert (b16.batch_size, b16.lr, b16.warmup_steps, b16.weight_decay) == (4096, 0.0008, 10_000,
                                                                          0.03)
  assert b16.total_steps == 90 * 1_281_167 // 4096 and b16.optimizer == 'sgd'
  assert b16.model_overrides['crop_pct'] == 0.9 and b16.model_overrides['dropout_rate'] == 0.0
  for model in ('vit_base_patch16_384', 'vit_base_patch32_384', 'vit_large_patch16_224',
                'vit_large_patch16_384', 'vit_base_resnet50_384'):
    c = card.get_config(model)
    assert (c.batch_size, c.momentum, c.weight_decay) == (512, 0.9, 0.0)
    assert c.image_size == CARD[model]['image_size']
    assert c.model_overrides['crop_pct'] == (1.0 if c.image_size == 384 else 0.9)
  with pytest.raises(ValueError, match='the card has'):
    card.get_config('vit_tiny_patch16_224')


def test_finetune_is_the_vit_paper_recipe():
  c = importlib.import_module('configs.finetune').get_config('vit_base_patch16_384')
  assert (c.optimizer, c.momentum, c.batch_size, c.warmup_steps, c.grad_clip_norm) == (
      'sgd', 0.9, 512, 500, 1.0)
  assert c.image_size == 384 and c.pretrained == ''


def _model(c):
  from vit_jax.models import registry
  return registry.get_model_config(c.model, **c.model_overrides, image_size=c.image_size)


# big_vision's eval preprocessing: resize_small(256) | central_crop(224) | value_range(-1, 1)
BIG_VISION_EVAL = dict(crop_pct=0.875, crop_mode='big_vision', interpolation='area',
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
I1K_EVALS = {'minival': 'tfds:imagenet2012:train[99%:]',
             'real': 'tfds:imagenet2012_real:validation', 'v2': 'tfds:imagenet_v2:test'}


def _big_vision_training(c):
  """What vit_s16_i1k.py and vit_i1k.py share."""
  assert (c.optimizer, c.adam_b1, c.adam_b2, c.adam_eps, c.adam_mu_dtype) == (
      'adamw', 0.9, 0.999, 1e-8, 'bfloat16')
  assert (c.lr, c.weight_decay, c.weight_decay_style) == (0.001, 0.0001, 'big_vision')
  assert (c.warmup_steps, c.grad_clip_norm, c.label_smoothing) == (10_000, 1.0, 0.0)
  assert tuple(c.crop_scale) == (0.05, 1.0) and c.flip is True and c.image_size == 224
  assert c.dataset == 'tfds:imagenet2012:train[:99%]' and c.total_steps == 0
  assert c.eval_dataset == 'tfds:imagenet2012:validation'
  assert c.evals.to_dict() == I1K_EVALS and c.eval_every == 2500
  m = _model(c)
  from vit_jax.models import registry
  assert {k: m[k] for k in BIG_VISION_EVAL} == BIG_VISION_EVAL == registry.big_vision_eval()
  assert (m.gelu_approximate, m.posemb_class_token, m.head_zeroinit) == (True, False, True)
  assert m.representation_size == m.hidden_size  # rep_size=True: a tanh layer of the width
  return m


def test_bv_plain_is_big_vision_s16_i1k():
  from vit_jax.data import splits
  from vit_jax.train import duration
  c = importlib.import_module('configs.bv_plain').get_config()
  m = _big_vision_training(c)
  assert (m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim, m.patch_size) == (
      384, 12, 6, 1536, 16)
  assert (m.classifier, m.posemb, m.dropout_rate, m.drop_path_rate, m.num_classes) == (
      'gap', 'sincos2d', 0.0, 0.0, 1000)
  assert (c.batch_size, c.loss, tuple(c.randaug), c.mixup, c.cutmix) == (
      1024, 'softmax_xent', (2, 10), 0.2, 0.0)
  # 90, 150 and 300 epochs of train[:99%] (1,268,355 images), rounded as big_vision rounds
  assert splits.known_size(c.dataset) == 1_268_355
  for epochs, steps in ((90, 111_477), (150, 185_794), (300, 371_588)):
    c.total_epochs = epochs
    assert duration.total_steps(c, 1_268_355) == steps


AUGREG_LEVELS = {  # vit_i1k.py's RANDAUG_DEF and MIXUP_DEF
    'none': ((), 0.0), 'light1': ((2, 0), 0.0), 'light2': ((2, 10), 0.2),
    'medium1': ((2, 15), 0.2), 'medium2': ((2, 15), 0.5), 'strong1': ((2, 20), 0.5),
    'strong2': ((2, 20), 0.8)}


@pytest.mark.parametrize('model, shape, regularization', [
    ('S/16', (384, 12, 6, 1536), 0.0), ('B/16', (768, 12, 12, 3072), 0.1)])
def test_augreg_is_big_vision_vit_i1k_at_each_level(model, shape, regularization):
  augreg = importlib.import_module('configs.augreg')
  for level, (randaug, mixup) in AUGREG_LEVELS.items():
    c = augreg.get_config(f'{model},{level}')
    assert (tuple(c.randaug), c.mixup) == (randaug, mixup)
    assert config_keys.randaug_of(c) == (None if not randaug else (2, float(randaug[1])))
  c = augreg.get_config(model)  # vit_i1k.py's default level for both: medium2
  assert (tuple(c.randaug), c.mixup) == ((2, 15), 0.5)
  m = _big_vision_training(c)
  assert (m.hidden_size, m.num_layers, m.num_heads, m.mlp_dim) == shape and m.patch_size == 16
  assert (m.classifier, m.posemb, m.head_bias_init, m.num_classes) == ('token', 'learn', -6.9,
                                                                       1000)
  assert (m.dropout_rate, m.drop_path_rate) == (regularization, regularization)
  assert (c.batch_size, c.loss, c.total_epochs) == (4096, 'sigmoid_xent', 300)


@pytest.mark.parametrize('arg, message', [
    ('L/16', "unknown model 'L/16'; choose one of S/16, B/16"),
    ('S/16,heavy', "unknown AugReg level 'heavy'; choose one of none, light1, light2, "
     'medium1, medium2, strong1, strong2')])
def test_augreg_names_its_choices(arg, message):
  with pytest.raises(ValueError, match=message):
    importlib.import_module('configs.augreg').get_config(arg)


def test_the_card_says_where_its_numbers_come_from():
  doc = importlib.import_module('configs.card').__doc__
  assert 'not a published from-scratch recipe' in ' '.join(doc.split())
  assert 'configs/bv_plain.py' in doc
