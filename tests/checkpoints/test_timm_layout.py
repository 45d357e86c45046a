"""The full-size released layouts: every key of the seven card files maps."""
import json

import numpy as np
import pytest

import vit_jax
from vit_jax.checkpoints import timm_layout
from vit_jax.checkpoints.formats import expected_shapes
from conftest import CARD_COUNTS, CARD_MODELS, data_path


def _free_array(shape):
  """A zero-stride array: any shape, no memory (full-size models are 1.2 GB)."""
  return np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape, (0,) * len(shape))


@pytest.mark.parametrize('name', CARD_MODELS)
def test_released_manifest_maps_key_for_key_and_shape_for_shape(name):
  with open(data_path('timm', 'manifests', f'{name}.json')) as f:
    manifest = json.load(f)
  assert manifest['num_params'] == CARD_COUNTS[name]
  cfg = vit_jax.get_model_config(name)
  table = timm_layout.rules(cfg)
  released = manifest['state_dict']
  assert timm_layout.expected_timm_keys(table) == set(released)  # nothing missing or left over
  ours = timm_layout.to_ours({k: _free_array(tuple(s)) for k, s in released.items()}, table)
  want = expected_shapes(cfg)
  assert set(ours) == set(want)
  assert {k: v.shape for k, v in ours.items()} == want
  if name == 'vit_small_patch16_224':  # the card's file: a 2-D Linear patch embedding
    assert released['patch_embed.proj.weight'] == [768, 768]


@pytest.mark.parametrize('name', CARD_MODELS)
def test_rules_are_inverse_in_both_directions(name):
  overrides = dict(hidden_size=32, num_heads=4, mlp_dim=48, num_layers=2, num_classes=7)
  if name == 'vit_base_resnet50_384':
    overrides.update(resnet=(1, 1, 1), image_size=64)
  cfg = vit_jax.get_model_config(name, **overrides)
  rs = np.random.RandomState(0)
  ours = {k: rs.randn(*s).astype(np.float32) for k, s in expected_shapes(cfg).items()}
  table = timm_layout.rules(cfg)
  sd = timm_layout.to_timm(ours, table)
  back = timm_layout.to_ours(sd, table)
  assert set(back) == set(ours)
  for k in ours:
    np.testing.assert_array_equal(back[k], ours[k], err_msg=k)
  assert sd['blocks.0.attn.qkv.weight'].shape == (96, 32)
  # q, k, v fused in that order along the output axis, as timm does
  q = ours['Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel']
  np.testing.assert_array_equal(sd['blocks.0.attn.qkv.weight'][:32], q.reshape(32, 32).T)


def test_big_visions_layouts_in_timms_names():
  """Position embeddings without the class slot are timm's `no_embed_class`
  layout; first-token pooling is timm's `global_pool='token'` without a class
  token (`norm`, not `fc_norm`); sin-cos embeddings and MAP have no place."""
  tiny = dict(num_layers=1, num_classes=10)
  rules = timm_layout.rules(vit_jax.get_model_config(
      'vit_base_patch16_224', **tiny, classifier='0', posemb_class_token=False))
  keys = timm_layout.expected_timm_keys(rules)
  assert {'pos_embed', 'norm.weight'} <= keys and 'cls_token' not in keys
  assert 'fc_norm.weight' in timm_layout.expected_timm_keys(timm_layout.rules(
      vit_jax.get_model_config('vit_base_patch16_224', **tiny, classifier='gap')))
  for fields, message in ((dict(posemb='sincos2d'), "posemb 'sincos2d' has no place"),
                          (dict(classifier='map'), "classifier 'map' has no place")):
    with pytest.raises(ValueError, match=message):
      timm_layout.rules(vit_jax.get_model_config('vit_base_patch16_224', **fields))
