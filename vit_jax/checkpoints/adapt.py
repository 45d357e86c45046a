"""Fitting loaded parameters to a model with another head or resolution."""
from __future__ import annotations

import logging

import ml_collections
import numpy as np

POSEMB = 'Transformer/posembed_input/pos_embedding'


def total_stride(cfg: ml_collections.ConfigDict) -> int:
  """Pixels per token side: the patch size times the hybrid stem's stride."""
  stem = 4 * 2 ** (len(cfg.resnet) - 1) if cfg.resnet is not None else 1
  return cfg.patch_size * stem


def num_prefix(cfg: ml_collections.ConfigDict) -> int:
  """Position embeddings before the patches': the class token's slot, if any."""
  return int(cfg.classifier == 'token' and cfg.posemb_class_token)


def grid_size(cfg: ml_collections.ConfigDict) -> int:
  return cfg.image_size // total_stride(cfg)


def _linear_resize_axis(x: np.ndarray, new: int, axis: int) -> np.ndarray:
  """Linear interpolation with the end points kept (scipy.ndimage.zoom, order=1)."""
  old = x.shape[axis]
  pos = np.linspace(0.0, old - 1.0, new) if new > 1 else np.zeros(1)
  lo = np.clip(np.floor(pos).astype(int), 0, old - 1)
  hi = np.minimum(lo + 1, old - 1)
  w = (pos - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
  return np.take(x, lo, axis) * (1 - w) + np.take(x, hi, axis) * w


def resample_posemb(posemb: np.ndarray, new_grid: int, num_prefix: int) -> np.ndarray:
  """Bilinear resampling of the patch grid, the class token kept aside, as the
  ViT paper and the official code do (scipy.ndimage.zoom order 1)."""
  prefix, grid = posemb[:, :num_prefix], posemb[0, num_prefix:]
  old = int(round(np.sqrt(grid.shape[0])))
  if old * old != grid.shape[0]:
    raise ValueError(f'position embeddings of {grid.shape[0]} tokens are not a square grid')
  g = grid.reshape(old, old, -1).astype(np.float64)
  g = _linear_resize_axis(_linear_resize_axis(g, new_grid, 0), new_grid, 1)
  g = g.reshape(1, new_grid * new_grid, -1).astype(posemb.dtype)
  return np.concatenate([prefix, g], axis=1)


def adapt(flat: dict[str, np.ndarray], src: ml_collections.ConfigDict,
          dst: ml_collections.ConfigDict, log=logging.warning) -> dict[str, np.ndarray]:
  """Re-initialise or drop the head and resample position embeddings."""
  flat = dict(flat)
  if src.num_classes != dst.num_classes:
    flat.pop('head/kernel', None)
    flat.pop('head/bias', None)
    if dst.num_classes:
      width = dst.representation_size or dst.hidden_size
      flat['head/kernel'] = np.zeros((width, dst.num_classes), np.float32)
      flat['head/bias'] = np.full((dst.num_classes,), dst.head_bias_init, np.float32)
      log(f'head: the checkpoint has {src.num_classes} classes, the model {dst.num_classes}; '
          'the head is re-initialised to zeros')
    else:
      log(f'head: dropped ({src.num_classes} classes in the checkpoint; num_classes=0)')
  if grid_size(src) != grid_size(dst):
    flat[POSEMB] = resample_posemb(flat[POSEMB], grid_size(dst), num_prefix(dst))
    log(f'position embeddings: resampled (bilinear) from a {grid_size(src)}x{grid_size(src)} '
        f'to a {grid_size(dst)}x{grid_size(dst)} patch grid for image_size {dst.image_size}')
  return flat
