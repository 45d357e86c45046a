"""big_vision's `.npz` checkpoints <-> our parameter tree, and the model their
arrays describe.

big_vision's plain ViT (`big_vision/models/vit.py`) names its parameters as
the official Flax code does with Linen numbering, except: the position
embeddings sit at the top level (`pos_embedding`, the patch tokens' only:
they are added before the class token is prepended; none at all for the
fixed 'sincos2d' ones), attention pooling lives under `MAPHead_0`, and with
`scan=True` one `Transformer/encoderblock` holds every block's arrays stacked.
A training checkpoint keeps them under `params/` beside the optimizer state
(`opt/...`; in the Flax-optimizer era under `opt/target/`); released files
hold the parameters alone. Its model fixes what ours leaves open: tanh GELU,
LayerNorm eps 1e-6, qkv biases, attention scale head_dim ** -0.5, no
hybrid stem, the pooled output of `pool_type` 'tok', 'gap', 'map' or '0'.
`vit.load` restores a file into a model only when the two trees are equal.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Optional

import ml_collections
import numpy as np
from flax import traverse_util

from vit_jax.checkpoints import google_layout, scan_layout
from vit_jax.checkpoints.adapt import POSEMB
from vit_jax.checkpoints.errors import CheckpointError
from vit_jax.models import registry

BIG_VISION_POSEMB = 'pos_embedding'
PREFIXES = ('params/', 'opt/target/')  # where training checkpoints keep the parameters
_BLOCK = re.compile(r'Transformer/encoderblock_(\d+)/')
_BLOCK0 = 'Transformer/encoderblock_0'
# what the arrays say; --model and --set may not contradict it
TOLD = ('patch_size', 'hidden_size', 'num_layers', 'num_heads', 'mlp_dim', 'classifier',
        'posemb', 'posemb_class_token', 'representation_size', 'resnet')
# big_vision's model code fixes these
FIXED = dict(gelu_approximate=True, layer_norm_eps=1e-6, qkv_bias=True, attn_scale=None,
             resnet=None)
FALLBACK_BASE = 'vit_s16_i1k_90ep'


def is_big_vision(keys: Iterable[str]) -> bool:
  """A big_vision checkpoint rather than an official release: its optimizer
  prefixes, a top-level (or pre-2022 `Transformer/`) `pos_embedding`, none at
  all (sin-cos), a MAP head or stacked (scan) blocks."""
  keys = set(keys)
  if any(k.startswith(('params/', 'opt/')) for k in keys):
    return True
  return ('embedding/kernel' in keys and POSEMB not in keys) or any(
      k.startswith(('MAPHead_0/', 'Transformer/encoderblock/')) for k in keys)


def _as_float(a: np.ndarray) -> np.ndarray:
  """numpy saves bfloat16 as 2-byte void; big_vision reads it back as bfloat16."""
  if a.dtype.kind == 'V' and a.dtype.itemsize == 2:
    import ml_dtypes
    a = a.view(ml_dtypes.bfloat16)
  return a


def to_ours(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Our flat tree (release block layout) from a big_vision `.npz`'s arrays:
  the parameters without their prefix and without the optimizer state."""
  for prefix in PREFIXES:
    if any(k.startswith(prefix) for k in raw):
      raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
      break
  flat = {('pos_embedding' if k == 'Transformer/pos_embedding' else k): _as_float(np.asarray(v))
          for k, v in raw.items()}
  tree = scan_layout.unstack_blocks(traverse_util.unflatten_dict(flat, sep='/'))
  return google_layout.to_ours(traverse_util.flatten_dict(tree, sep='/'))


def _array(flat: dict[str, np.ndarray], key: str, source: str) -> np.ndarray:
  if key not in flat:
    raise CheckpointError(f'{source}: no {key}; not a big_vision plain ViT checkpoint')
  return flat[key]


def model_fields(flat: dict[str, np.ndarray], source: str) -> dict[str, Any]:
  """The architecture the arrays (in our names) and big_vision's code give;
  `image_size` only where learned position embeddings tell it."""
  kernel = _array(flat, 'embedding/kernel', source)
  if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1] or kernel.shape[2] != 3:
    raise CheckpointError(f'{source}: embedding/kernel {kernel.shape} is not a square patch '
                          'embedding of RGB images; our ViT takes (p, p, 3, width)')
  depth = 1 + max((int(m.group(1)) for k in flat if (m := _BLOCK.match(k))), default=-1)
  classifier = ('map' if 'MAPHead_0/probe' in flat else 'token' if 'cls' in flat else 'gap')
  fields = dict(
      FIXED, patch_size=int(kernel.shape[0]), hidden_size=int(kernel.shape[3]), num_layers=depth,
      num_heads=int(_array(flat, f'{_BLOCK0}/MultiHeadDotProductAttention_0/query/kernel',
                           source).shape[1]),
      mlp_dim=int(_array(flat, f'{_BLOCK0}/MlpBlock_0/Dense_0/kernel', source).shape[1]),
      classifier=classifier, posemb='learn' if POSEMB in flat else 'sincos2d',
      posemb_class_token=False,
      representation_size=(int(flat['pre_logits/kernel'].shape[1])
                           if 'pre_logits/kernel' in flat else None),
      num_classes=int(flat['head/bias'].shape[0]) if 'head/bias' in flat else 0,
      source='big_vision')
  if POSEMB in flat:
    tokens = flat[POSEMB].shape[1]
    # big_vision's fix_old_checkpoints: one more than a square is the class token's slot
    slot = classifier == 'token' and math.isqrt(tokens) ** 2 != tokens
    grid = math.isqrt(tokens - slot)
    if grid * grid != tokens - slot:
      raise CheckpointError(f'{source}: {tokens} position embeddings are not a square grid')
    fields.update(posemb_class_token=slot, image_size=grid * fields['patch_size'])
  return fields


def _told(key: str, fields: dict) -> bool:
  """Whether the arrays decide `key` (gap and '0' pool look alike; the class
  slot matters only for learned embeddings of a class token)."""
  if key == 'posemb_class_token':
    return fields['classifier'] == 'token' and fields['posemb'] == 'learn'
  return True


def _agrees(key: str, fields: dict, value: Any) -> bool:
  if key == 'classifier' and fields[key] == 'gap':
    return value in ('gap', '0')
  return value == fields[key]


def target_config(source: str, flat: dict[str, np.ndarray], model_name: Optional[str],
                  overrides: dict) -> ml_collections.ConfigDict:
  """The model config of a big_vision checkpoint: what its arrays say, over
  `model_name` (if given: its image size and preprocessing) or the
  registered plain ViT of that shape (then big_vision's eval preprocessing),
  then `overrides`; a contradiction of the arrays is one line."""
  fields = model_fields(flat, source)
  claimed = registry.get_model_config(model_name or FALLBACK_BASE, **overrides)
  for key in TOLD:
    if key in overrides:
      who = f'the override {key}={overrides[key]}'
    elif model_name:
      who = f'model {model_name}'
    else:
      continue
    if _told(key, fields) and not _agrees(key, fields, claimed[key]):
      raise CheckpointError(f'{source}: the arrays give {key} {fields[key]!r}, {who} has '
                            f'{claimed[key]!r}; leave it out: the architecture comes from the file')
  if not model_name:
    if 'image_size' not in fields and 'image_size' not in overrides:
      raise CheckpointError(
          f'{source}: a big_vision checkpoint with sin-cos position embeddings does not store '
          'its image size; pass it (--set image_size=224, or --model NAME)')
    fields.update(registry.big_vision_eval(), weights_file=None, weights_url=None)
    model_name = registry.model_of_shape(
        fields, ('source', 'representation_size', 'classifier', 'posemb'), FALLBACK_BASE)
  return registry.get_model_config(model_name, **{**fields, **overrides})


# --- writing -------------------------------------------------------------

def check_writable(cfg: ml_collections.ConfigDict) -> None:
  """One line for the first field big_vision's ViT cannot express."""
  what = f"model {cfg.name} cannot be written for big_vision's ViT:"
  if cfg.resnet is not None:
    raise CheckpointError(f'{what} it has no ResNet stem (resnet={tuple(cfg.resnet)}); write '
                          '.npz without --to, .pth, .safetensors or orbax')
  if registry.custom_attn_scale(cfg):
    raise CheckpointError(f'{what} attn_scale {cfg.attn_scale:.6g}: it uses head_dim ** -0.5')
  for key, value in FIXED.items():
    if key not in ('resnet', 'attn_scale') and cfg[key] != value:
      raise CheckpointError(f'{what} {key}={cfg[key]!r}; its code fixes {key}={value!r}')


def to_big_vision(flat: dict[str, np.ndarray], cfg: ml_collections.ConfigDict
                  ) -> dict[str, np.ndarray]:
  """The arrays of the big_vision model `model_kwargs(cfg)` describes: a class
  slot in learned position embeddings is added into the class token, which
  is what big_vision's order computes."""
  check_writable(cfg)
  out = {k: v for k, v in flat.items() if k != POSEMB}
  if POSEMB in flat:
    pe = flat[POSEMB]
    if cfg.classifier == 'token' and cfg.posemb_class_token:
      out['cls'] = flat['cls'] + pe[:, :1]
      pe = pe[:, 1:]
    out[BIG_VISION_POSEMB] = pe
  return out


def model_kwargs(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """The keyword arguments of big_vision's `vit.Model` for a config."""
  return dict(num_classes=cfg.num_classes or None, patch_size=(cfg.patch_size,) * 2,
              width=cfg.hidden_size, depth=cfg.num_layers, mlp_dim=cfg.mlp_dim,
              num_heads=cfg.num_heads, posemb=cfg.posemb,
              pool_type={'token': 'tok'}.get(cfg.classifier, cfg.classifier),
              rep_size=cfg.representation_size or False, head_zeroinit=cfg.head_zeroinit)
