"""Registry: names, configs and exact parameter counts (no weights allocated)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vit_jax
from vit_jax.models import registry
from conftest import CARD_COUNTS, CARD_MODELS

# Published counts of the rest of the family (timm / the ViT and DeiT papers).
FAMILY_COUNTS = {
    'vit_tiny_patch16_224': 5_717_416, 'deit_small_patch16_224': 22_050_664,
    'vit_base_patch32_224': 88_224_232, 'vit_large_patch32_224': 306_535_400,
    'vit_huge_patch14_224': 632_045_800,
}


@functools.lru_cache(maxsize=None)
def _count(name: str) -> int:
  cfg = vit_jax.get_model_config(name)
  model = vit_jax.create_model(name)
  x = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


def _analytic_count(cfg) -> int:
  """Parameter count from the paper's formulas, independent of the Flax code."""
  d, m, L = cfg.hidden_size, cfg.mlp_dim, cfg.num_layers
  stride = cfg.patch_size
  if cfg.resnet is not None:
    stem = 7 * 7 * 3 * 64 + 2 * 64
    cin = 64
    for i, depth in enumerate(cfg.resnet):
      f = 64 * 2 ** i
      for j in range(depth):
        unit = cin * f + 9 * f * f + f * 4 * f + 2 * (f + f + 4 * f)
        if j == 0:
          unit += cin * 4 * f + 2 * 4 * f
        stem += unit
        cin = 4 * f
    stride *= 4 * 2 ** (len(cfg.resnet) - 1)
  else:
    stem, cin = 0, 3
  class_slot = cfg.classifier == 'token' and cfg.posemb_class_token
  tokens = (cfg.image_size // stride) ** 2 + class_slot
  tokens *= cfg.posemb == 'learn'  # sin-cos position embeddings are no parameters
  embed = cfg.patch_size ** 2 * cin * d + d
  qkv_bias = 3 * d if cfg.qkv_bias else 0
  block = 4 * d * d + qkv_bias + d + 2 * d * m + m + d + 4 * d
  rep = cfg.representation_size
  head_in = rep or d
  pre = (d * rep + rep) if rep else 0
  return (stem + embed + tokens * d + (cfg.classifier == 'token') * d + L * block + 2 * d
          + pre + head_in * cfg.num_classes + cfg.num_classes)


@pytest.mark.parametrize('name', CARD_MODELS)
def test_card_models_have_the_released_parameter_counts(name):
  assert _count(name) == CARD_COUNTS[name]


@pytest.mark.parametrize('name', sorted(FAMILY_COUNTS))
def test_family_models_have_the_published_parameter_counts(name):
  assert _count(name) == FAMILY_COUNTS[name]


@pytest.mark.parametrize('name', vit_jax.list_models())
def test_every_registered_model_matches_the_analytic_count(name):
  assert _count(name) == _analytic_count(vit_jax.get_model_config(name))


def test_card_models_and_their_eval_preprocessing():
  assert set(CARD_MODELS) <= set(vit_jax.list_models())
  for name in CARD_MODELS:
    cfg = vit_jax.get_model_config(name)
    assert cfg.interpolation == 'bicubic'
    assert cfg.crop_pct == (1.0 if cfg.image_size == 384 else 0.9)
    assert cfg.representation_size is None and cfg.gelu_approximate is False
    assert cfg.weights_file.endswith('.pth') and cfg.weights_url.endswith(cfg.weights_file)
    if name == 'vit_small_patch16_224':
      assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
      assert cfg.layer_norm_eps == 1e-5 and cfg.qkv_bias is False
      assert cfg.attn_scale == pytest.approx(768 ** -0.5)
    else:
      assert cfg.mean == cfg.std == (0.5, 0.5, 0.5) and cfg.layer_norm_eps == 1e-6
      assert cfg.attn_scale is None and cfg.qkv_bias is True
  assert vit_jax.get_model_config('vit_base_resnet50_384').resnet == (3, 4, 9)
  assert vit_jax.get_model_config('vit_base_resnet50_384').group_norm_eps == 1e-5


def test_overrides_build_a_twin_and_unknown_names_are_refused():
  cfg = vit_jax.get_model_config('vit_base_patch16_224', num_classes=10, hidden_size=64,
                                 num_layers=2)
  assert (cfg.num_classes, cfg.hidden_size, cfg.num_layers, cfg.patch_size) == (10, 64, 2, 16)
  with pytest.raises(registry.UnknownModelError, match="unknown model 'vit_nope'"):
    vit_jax.get_model_config('vit_nope')
  with pytest.raises(ValueError, match='unknown model config field'):
    vit_jax.get_model_config('vit_base_patch16_224', hiden_size=3)
  with pytest.raises(ValueError, match='dtype must be one of'):
    vit_jax.create_model('vit_base_patch16_224', dtype='float8')
