"""A malformed RandAugment, Mixup, CutMix or weight-decay setting: one line
naming the key and the form it takes, exit 2, before anything starts."""
import pytest

from eval_helpers import photo_folder
from train_helpers import run, tiny_args
from vit_jax.train import config_keys
from vit_jax.train.config_keys import Mixing


def test_settings_are_read_with_their_defaults():
  assert config_keys.randaug_of({'randaug': (2, 10)}) == (2, 10.0)
  assert config_keys.randaug_of({}) is None and config_keys.mixing_of({}) == Mixing()
  assert config_keys.mixing_of({'mixup': 0.2, 'cutmix': 1, 'mix_prob': 0.5}) == Mixing(
      mixup=0.2, cutmix=1.0, switch_prob=0.5, prob=0.5)
  for key, value in (('mixup', -0.1), ('cutmix', 'big'), ('mixup', True),
                     ('mix_prob', 1.5), ('mix_switch_prob', float('nan'))):
    with pytest.raises(ValueError) as e:
      config_keys.check({key: value})
    assert str(e.value) == f'{key} must be {config_keys.FORMS[key]}; got {value!r}'


@pytest.mark.parametrize('key, value', [
    ('randaug', '(2,)'), ('randaug', 'ten'), ('mixup', '-0.2'), ('cutmix', 'abc'),
    ('weight_decay_style', 'torch'), ('adam_mu_dtype', 'float16')])
def test_a_malformed_setting_names_the_key_and_its_form(tmp_path, key, value):
  data = photo_folder(str(tmp_path / 'data'), counts=(2, 2))
  _, err = run(tiny_args(tmp_path / 'w', data, **{key: value}), devices=1, expect=2)
  line, = err.strip().splitlines()
  assert line.startswith(f'error: {key} must be {config_keys.FORMS[key]}; got ')
  assert not (tmp_path / 'w').exists()  # nothing started
