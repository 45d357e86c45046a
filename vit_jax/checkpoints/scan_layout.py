"""Between the release layout (`encoderblock_0`, `encoderblock_1`, ...) and the
`scan_layers` layout (one `encoderblock` whose arrays have a leading layer axis).

Every file format stores the release layout; a model with `scan_layers`
takes the stacked one. `load_params` and `save_params` convert at the edge.
"""
from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

ENCODER = 'Transformer'
STACKED = 'encoderblock'
_BLOCK = re.compile(r'encoderblock_(\d+)$')


def _blocks(encoder: dict) -> dict[int, Any]:
  return {int(m.group(1)): v for k, v in encoder.items() if (m := _BLOCK.match(k))}


def is_stacked(params: dict) -> bool:
  return STACKED in params.get(ENCODER, {})


def stack_blocks(params: dict) -> dict:
  """Release layout -> scan layout (a no-op when already stacked)."""
  if is_stacked(params):
    return params
  encoder = dict(params[ENCODER])
  blocks = _blocks(encoder)
  if sorted(blocks) != list(range(len(blocks))) or not blocks:
    raise ValueError(f'encoder blocks {sorted(blocks)} are not numbered 0..N-1')
  for i in blocks:
    del encoder[f'encoderblock_{i}']
  encoder[STACKED] = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]),
                                  *(blocks[i] for i in range(len(blocks))))
  return {**params, ENCODER: encoder}


def unstack_blocks(params: dict) -> dict:
  """Scan layout -> release layout (a no-op when not stacked)."""
  if not is_stacked(params):
    return params
  encoder = dict(params[ENCODER])
  stacked = encoder.pop(STACKED)
  for i in range(len(jax.tree.leaves(stacked)[0])):
    encoder[f'encoderblock_{i}'] = jax.tree.map(lambda a, i=i: np.asarray(a[i]), stacked)
  return {**params, ENCODER: encoder}
