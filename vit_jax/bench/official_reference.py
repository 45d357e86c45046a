"""The official Flax ViT (google-research/vision_transformer), for comparisons.

Not a dependency: the benchmark's `--compare official` takes the path of a
checkout of that repository and loads its `vit_jax/models_vit.py` by file
path (its package is also named `vit_jax`, so it cannot be imported).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

import ml_collections


def _load(name: str, path: str) -> ModuleType:
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def official_model(cfg: ml_collections.ConfigDict, checkout: str):
  """The official `VisionTransformer` with the structure of `cfg` (plain ViT;
  the official code has no qkv-bias switch, custom scale or erf GELU, which
  change nothing of the cost)."""
  root = os.path.join(checkout, 'vit_jax')
  if not os.path.isfile(os.path.join(root, 'models_vit.py')):
    raise ValueError(f'{checkout}: not a checkout of google-research/vision_transformer '
                     '(no vit_jax/models_vit.py)')
  if cfg.resnet is not None or cfg.dtype != 'float32':
    raise ValueError('--compare official covers the plain ViT models in float32 only')
  key = 'vit_jax.models_resnet'  # what models_vit imports
  previous = sys.modules.get(key)
  sys.modules[key] = _load('official_models_resnet', os.path.join(root, 'models_resnet.py'))
  try:
    models_vit = _load('official_models_vit', os.path.join(root, 'models_vit.py'))
  finally:
    if previous is None:
      sys.modules.pop(key)
    else:
      sys.modules[key] = previous
  return models_vit.VisionTransformer(
      num_classes=cfg.num_classes,
      patches=ml_collections.ConfigDict({'size': (cfg.patch_size, cfg.patch_size)}),
      hidden_size=cfg.hidden_size, classifier=cfg.classifier,
      representation_size=cfg.representation_size,
      transformer=dict(num_layers=cfg.num_layers, mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads,
                       dropout_rate=0.0, attention_dropout_rate=0.0))
