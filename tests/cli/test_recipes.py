"""Recipes by name wherever the package is installed, and any model config
field from the command line."""
import os

import ml_collections
import pytest

from vit_jax.cli import recipes

CONFIGS = os.path.dirname(__import__('configs').__file__)


@pytest.mark.parametrize('spec, file, arg', [
    ('quickstart', 'quickstart.py', ''), ('card:vit_base_patch16_384', 'card.py',
                                          ':vit_base_patch16_384'),
    ('configs.card:vit_large_patch16_224', 'card.py', ':vit_large_patch16_224'),
    ('/elsewhere/configs/finetune.py:vit_base_patch16_384', 'finetune.py',
     ':vit_base_patch16_384')])
def test_a_recipe_is_found_in_the_installed_configs(spec, file, arg):
  assert recipes.resolve(spec) == os.path.join(CONFIGS, file) + arg


def test_a_file_that_exists_is_taken_as_it_is(tmp_path):
  mine = tmp_path / 'card.py'
  mine.write_text('')
  assert recipes.resolve(f'{mine}:x') == f'{mine}:x'
  assert recipes.resolve('no_such_recipe') == 'no_such_recipe'  # ml_collections names it
  assert recipes.resolve('common') == 'common'  # not a recipe


def test_argv_is_rewritten_and_model_overrides_taken_out():
  argv, overrides = recipes.rewrite_argv(
      ['train.py', '--config', 'quickstart', '--config.lr=0.1',
       '--config.model_overrides.remat=True', '--config.model_overrides.mean=(0.5,0.5,0.5)'])
  assert argv == ['train.py', '--config', os.path.join(CONFIGS, 'quickstart.py'),
                  '--config.lr=0.1']
  assert overrides == [('remat', 'True'), ('mean', '(0.5,0.5,0.5)')]


def test_any_model_field_is_set_and_an_unknown_one_is_named():
  config = ml_collections.ConfigDict({'model': 'vit_base_patch16_224',
                                      'model_overrides': {'num_classes': 10}})
  config.lock()
  recipes.apply_overrides(config, [('remat', 'True'), ('remat_policy', 'dots_saveable'),
                                   ('num_classes', '5'), ('mean', '(0.5, 0.5, 0.5)')])
  assert config.model_overrides.to_dict() == {
      'num_classes': 5, 'remat': True, 'remat_policy': 'dots_saveable', 'mean': (0.5, 0.5, 0.5)}
  with pytest.raises(ValueError, match=r"^--config.model_overrides.dropout: the model config "
                     r"has no field 'dropout'; fields are: attention_dropout_rate, attn_scale"):
    recipes.apply_overrides(config, [('dropout', '0.1')])


def test_the_recipes_are_named_where_a_config_is_neither_file_nor_recipe(tmp_path):
  assert recipes.choices() == ['augreg', 'bv_plain', 'card', 'eval', 'finetune', 'quickstart']
  assert recipes.missing('bv_plan:x') == (
      "no recipe or config file 'bv_plan'; recipes: augreg, bv_plain, card, eval, finetune, "
      'quickstart (--config=NAME[:ARG], or the path of a config file)')
  assert recipes.missing(os.path.join(CONFIGS, 'card.py') + ':vit_base_patch16_224') is None


@pytest.mark.parametrize('spec, message', [
    ('bv_plan', "bad --config: no recipe or config file 'bv_plan'; recipes: augreg, bv_plain, "
     'card, eval, finetune, quickstart'),
    ('augreg:B/16,extreme', "unknown AugReg level 'extreme'; choose one of none, light1, "
     'light2, medium1, medium2, strong1, strong2')])
def test_an_unknown_recipe_or_level_is_one_line_and_exit_2(tmp_path, spec, message):
  import subprocess
  import sys
  root = os.path.dirname(CONFIGS)
  out = subprocess.run([sys.executable, os.path.join(root, 'train.py'), f'--config={spec}',
                        f'--workdir={tmp_path / "w"}'], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
  assert out.returncode == 2 and out.stdout == ''
  line, = out.stderr.strip().splitlines()
  assert line.startswith('error: ') and message in line
  assert not (tmp_path / 'w').exists()
