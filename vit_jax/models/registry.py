"""Named model configurations: the timm card's seven models and the family.

Each entry is a full `ml_collections.ConfigDict`: architecture, the eval
preprocessing its weights were evaluated with, and where its weights come
from (file name and URL, for the user to download; nothing is fetched here).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from vit_jax.models import vit

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
TIMM_RELEASE = 'https://github.com/rwightman/pytorch-image-models/releases/download/'
GOOGLE_BUCKET = 'https://storage.googleapis.com/vit_models/'
BIG_VISION_BUCKET = 'https://storage.googleapis.com/big_vision/'

# Architecture fields that `create_model` passes on to the Flax module.
MODULE_FIELDS = ('num_classes', 'patch_size', 'hidden_size', 'num_layers', 'num_heads',
                 'mlp_dim', 'qkv_bias', 'attn_scale', 'gelu_approximate', 'layer_norm_eps',
                 'representation_size', 'classifier', 'posemb', 'posemb_class_token',
                 'head_zeroinit', 'resnet', 'group_norm_eps', 'dropout_rate',
                 'attention_dropout_rate', 'drop_path_rate', 'head_bias_init', 'remat',
                 'remat_policy', 'scan_layers')


def _base(**kw: Any) -> dict:
  # crop_mode 'center': the shorter side to image_size / crop_pct, then a centre
  # crop (timm's default); 'squash': both sides to it, the aspect ratio ignored
  # (timm's 'squash'; Hugging Face's ViT checkpoints use it with crop_pct 1);
  # 'big_vision': resize_small then central_crop (the long side rounded, the
  # crop offsets floored). interpolation 'area' is TensorFlow's area resize.
  # representation_size True: a pre-logits layer of the model's width
  cfg = dict(
      image_size=224, patch_size=16, hidden_size=768, num_layers=12, num_heads=12,
      mlp_dim=3072, num_classes=1000, qkv_bias=True, attn_scale=None,
      gelu_approximate=False, layer_norm_eps=1e-6, representation_size=None,
      classifier='token', posemb='learn', posemb_class_token=True, head_zeroinit=True,
      resnet=None, group_norm_eps=1e-5, dropout_rate=0.0, attention_dropout_rate=0.0,
      drop_path_rate=0.0, head_bias_init=0.0, remat=False, remat_policy=None,
      scan_layers=False, dtype='float32',
      crop_pct=0.9, crop_mode='center', interpolation='bicubic', mean=HALF, std=HALF,
      weights_file=None, weights_url=None, source='timm')
  cfg.update(kw)
  return cfg


def _timm(file: str, tag: str = 'v0.1-vitjx', **kw: Any) -> dict:
  """A model whose reference weights are a timm `.pth` (exact erf GELU)."""
  return _base(weights_file=file, weights_url=TIMM_RELEASE + f'{tag}/{file}', **kw)


def _google(file: str, folder: str = 'imagenet21k+imagenet2012', **kw: Any) -> dict:
  """A model whose reference weights are an official `.npz` (tanh GELU)."""
  return _base(weights_file=file, weights_url=GOOGLE_BUCKET + f'{folder}/{file}',
               gelu_approximate=True, source='google', group_norm_eps=1e-6, **kw)


def big_vision_eval() -> dict:
  """big_vision's ImageNet eval preprocessing: `resize_small(256)` (TensorFlow's
  area resize), `central_crop(224)`, `value_range(-1, 1)`."""
  return dict(crop_pct=224 / 256, crop_mode='big_vision', interpolation='area', mean=HALF,
              std=HALF)


def _big_vision(file: str, **kw: Any) -> dict:
  """A big_vision `.npz` release: its plain ViT (tanh GELU, position embeddings
  before the class token), evaluated with big_vision's preprocessing."""
  return _base(weights_file=file, weights_url=BIG_VISION_BUCKET + file, gelu_approximate=True,
               posemb_class_token=False, source='big_vision', **big_vision_eval(), **kw)


def _in21k(file: str, **kw: Any) -> dict:
  """ImageNet-21k pre-trained release: pre-logits layer and 21843 classes."""
  return _google(file, folder='imagenet21k', num_classes=21843, **kw)


B = dict(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072)
L = dict(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096)
H = dict(hidden_size=1280, num_layers=32, num_heads=16, mlp_dim=5120, patch_size=14)
TI = dict(hidden_size=192, num_layers=12, num_heads=3, mlp_dim=768)
S = dict(hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536)
AT_384 = dict(image_size=384, crop_pct=1.0)
# big_vision's plain ViT-S/16 on ImageNet-1k (Beyer, Zhai, Kolesnikov 2022)
S16_I1K = dict(**S, classifier='gap', posemb='sincos2d', representation_size=True)

_REGISTRY: dict[str, dict] = {
    # --- the seven models of the timm card ---
    # The card's early timm "small" (not DeiT-S): its released weights need
    # attention scale 768 ** -0.5, LayerNorm eps 1e-5 and ImageNet mean/std.
    'vit_small_patch16_224': _timm(
        'vit_small_p16_224-15ec54c9.pth', tag='v0.1-weights', hidden_size=768, num_layers=8,
        num_heads=8, mlp_dim=2304, qkv_bias=False, attn_scale=768 ** -0.5,
        layer_norm_eps=1e-5, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    'vit_base_patch16_224': _timm('jx_vit_base_p16_224-80ecf9dd.pth', **B),
    'vit_base_patch16_384': _timm('jx_vit_base_p16_384-83fb41ba.pth', **B, **AT_384),
    'vit_base_patch32_384': _timm('jx_vit_base_p32_384-830016f5.pth', **B, **AT_384,
                                  patch_size=32),
    'vit_large_patch16_224': _timm('jx_vit_large_p16_224-4ee7a4dc.pth', **L),
    'vit_large_patch16_384': _timm('jx_vit_large_p16_384-b3be5167.pth', **L, **AT_384),
    'vit_base_resnet50_384': _timm('jx_vit_base_resnet50_384-9fd3c705.pth', **B, **AT_384,
                                   patch_size=1, resnet=(3, 4, 9)),
    # --- the rest of the family: ImageNet-1k fine-tuned releases ---
    'vit_tiny_patch16_224': _google(
        'Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-'
        'lr_0.03-res_224.npz', folder='augreg', **TI),
    'vit_tiny_patch16_384': _google(
        'Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-'
        'lr_0.03-res_384.npz', folder='augreg', **TI, **AT_384),
    'deit_small_patch16_224': _base(
        weights_file='deit_small_patch16_224-cd65a155.pth', crop_pct=0.875,
        weights_url='https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth',
        mean=IMAGENET_MEAN, std=IMAGENET_STD, **S),
    'vit_base_patch32_224': _google('ViT-B_32.npz', **B, patch_size=32),
    'vit_large_patch32_224': _google('ViT-L_32.npz', **L, patch_size=32),
    'vit_large_patch32_384': _timm('jx_vit_large_p32_384-9b920ba8.pth', **L, **AT_384,
                                   patch_size=32),
    'vit_huge_patch14_224': _google('ViT-H_14.npz', **H),
    'vit_base_resnet50_224': _google('R50+ViT-B_16.npz', **B, patch_size=1, resnet=(3, 4, 9)),
    'vit_large_r50_s32_224': _google('R50+ViT-L_32.npz', **L, patch_size=1,
                                     resnet=(3, 4, 6, 3)),
    'vit_large_r50_s32_384': _google('R50+ViT-L_32.npz', **L, **AT_384, patch_size=1,
                                     resnet=(3, 4, 6, 3)),
    # --- big_vision's plain ViT-S/16 baselines: 90, 150 and 300 epochs ---
    'vit_s16_i1k_90ep': _big_vision('vit_s16_i1k_90ep.npz', **S16_I1K),
    'vit_s16_i1k_150ep': _big_vision('vit_s16_i1k_150ep.npz', **S16_I1K),
    'vit_s16_i1k_300ep': _big_vision('vit_s16_i1k_300ep.npz', **S16_I1K),
    # --- ImageNet-21k pre-trained releases (pre-logits Dense + tanh) ---
    'vit_base_patch16_224_in21k': _in21k('ViT-B_16.npz', **B, representation_size=768),
    'vit_base_patch32_224_in21k': _in21k('ViT-B_32.npz', **B, patch_size=32,
                                         representation_size=768),
    'vit_large_patch16_224_in21k': _in21k('ViT-L_16.npz', **L, representation_size=1024),
    'vit_large_patch32_224_in21k': _in21k('ViT-L_32.npz', **L, patch_size=32,
                                          representation_size=1024),
    'vit_huge_patch14_224_in21k': _in21k('ViT-H_14.npz', **H, representation_size=1280),
    'vit_base_resnet50_224_in21k': _in21k('R50+ViT-B_16.npz', **B, patch_size=1,
                                          resnet=(3, 4, 9), representation_size=768),
}

_DTYPES: dict[str, Callable] = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16,
                                'float16': jnp.float16}


class UnknownModelError(ValueError):
  """A model name that is not in the registry."""


def list_models() -> list[str]:
  """The registered model names, sorted."""
  return sorted(_REGISTRY)


def config_fields() -> list[str]:
  """The fields every model config has (each registered model has them all)."""
  return sorted(_base()) + ['name']


def get_model_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
  """The named model's config with `overrides` replacing its fields."""
  if name not in _REGISTRY:
    raise UnknownModelError(
        f"unknown model {name!r}; `python -c 'import vit_jax; print(vit_jax.list_models())'` "
        'lists the registered names')
  cfg = dict(_REGISTRY[name], name=name)
  unknown = sorted(set(overrides) - set(cfg))
  if unknown:
    raise ValueError(f'unknown model config field(s) {unknown} for {name!r}; '
                     f'fields are: {sorted(cfg)}')
  cfg.update(overrides)
  for key in ('resnet', 'mean', 'std'):  # JSON and flags give lists
    if cfg[key] is not None:
      cfg[key] = tuple(cfg[key])
  cfg['classifier'] = str(cfg['classifier'])  # '0' arrives as 0 from --set and flags
  rep = cfg['representation_size']  # big_vision's rep_size: True is the width, False none
  if isinstance(rep, bool):
    cfg['representation_size'] = cfg['hidden_size'] if rep else None
  return ml_collections.ConfigDict(cfg, type_safe=False)


def model_of_shape(fields: dict, prefer: Sequence[str], fallback: str) -> str:
  """The registered plain ViT with the shape `fields` give (patch size, width,
  depth, heads, MLP), those that agree with `fields` on `prefer` first (in
  that order; a key `fields` lacks is no preference), then by name;
  `fallback` if none has that shape."""
  shape = ('patch_size', 'hidden_size', 'num_layers', 'num_heads', 'mlp_dim')
  hits = []
  for name in list_models():
    c = get_model_config(name)
    if c.resnet is None and c.attn_scale is None and all(c[k] == fields[k] for k in shape):
      hits.append(tuple(c[k] != fields[k] for k in prefer if k in fields) + (name,))
  return min(hits)[-1] if hits else fallback


def custom_attn_scale(cfg: ml_collections.ConfigDict) -> bool:
  """Whether the attention scale is other than head_dim ** -0.5 (the card's
  vit_small_patch16_224): what most other codes cannot express."""
  head_scale = (cfg.hidden_size // cfg.num_heads) ** -0.5
  return cfg.attn_scale is not None and not math.isclose(cfg.attn_scale, head_scale)


def module_from_config(cfg: ml_collections.ConfigDict) -> nn.Module:
  """The Flax module for a (possibly overridden) model config."""
  if cfg.dtype not in _DTYPES:
    raise ValueError(f'dtype must be one of {sorted(_DTYPES)}, got {cfg.dtype!r}')
  kwargs = {k: cfg[k] for k in MODULE_FIELDS}
  return vit.VisionTransformer(dtype=_DTYPES[cfg.dtype], **kwargs)


def create_model(name: str, **overrides: Any) -> nn.Module:
  """The Flax module of a registered model; `overrides` replace config fields."""
  return module_from_config(get_model_config(name, **overrides))
