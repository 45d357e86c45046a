"""The official `.npz` layout <-> our parameter tree.

The 2020 releases predate flax.linen: inside an encoder block the sub-modules
are numbered in call order across types (`LayerNorm_0`,
`MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`), and hybrid
GroupNorm scale/bias have shape (1, 1, 1, C). Later files (Linen numbering,
big_vision's top-level `pos_embedding`) read too. Writing gives the release
layout, which the official code and timm's `.npz` loader take.
"""
from __future__ import annotations

import re

import numpy as np

_PRE_LINEN = {'LayerNorm_1': 'LayerNorm_2', 'MultiHeadDotProductAttention_0':
              'MultiHeadDotProductAttention_1', 'MlpBlock_0': 'MlpBlock_3'}
_FROM_PRE_LINEN = {v: k for k, v in _PRE_LINEN.items()}
_BIG_VISION_POSEMB = 'pos_embedding'
_POSEMB = 'Transformer/posembed_input/pos_embedding'
_GROUP_NORM = re.compile(r'(^|/)gn[\w]*/(scale|bias)$')


def _rename_in_block(key: str, table: dict[str, str]) -> str:
  parts = key.split('/')
  if len(parts) > 2 and parts[1].startswith('encoderblock_'):
    parts[2] = table.get(parts[2], parts[2])
  return '/'.join(parts)


def is_pre_linen(keys: set[str]) -> bool:
  return any('/MlpBlock_3/' in k for k in keys)


def to_ours(npz: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Our flat tree from the keys of a released (or big_vision) `.npz`."""
  pre_linen = is_pre_linen(set(npz))
  flat = {}
  for key, value in npz.items():
    value = np.asarray(value)
    if pre_linen:
      key = _rename_in_block(key, _FROM_PRE_LINEN)
    if key == _BIG_VISION_POSEMB:
      key = _POSEMB
    if _GROUP_NORM.search(key):
      value = value.reshape(-1)
    flat[key] = value
  return flat


def to_npz(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The release layout: pre-Linen block numbering, (1, 1, 1, C) GroupNorm."""
  out = {}
  for key, value in flat.items():
    value = np.asarray(value)
    if _GROUP_NORM.search(key):
      value = value.reshape(1, 1, 1, -1)
    out[_rename_in_block(key, _PRE_LINEN)] = value
  return out
