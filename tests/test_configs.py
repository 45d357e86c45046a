"""Every recipe has the keys scripts rely on, and the card's numbers."""
import importlib

import pytest

DESIGN_KEYS = ('model', 'model_overrides', 'dataset', 'data_dir', 'image_size', 'batch_size',
               'total_steps', 'warmup_steps', 'optimizer', 'lr', 'momentum', 'weight_decay',
               'grad_clip_norm', 'label_smoothing', 'accum_steps', 'dtype', 'pretrained',
               'checkpoint_every', 'keep_checkpoints', 'eval_every', 'log_every', 'seed')
CARD = importlib.import_module('configs.card').CARD


def _all_configs():
  yield 'quickstart', importlib.import_module('configs.quickstart').get_config()
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
