"""Mixup and CutMix inside the jitted step, each device on its own rows.

Mixup as big_vision's train.py does it: one lambda per step, drawn from the
step's rng as Beta(a, a) and taken as max(lambda, 1 - lambda), so every
device draws the same; each example is mixed with its neighbour, the row
before it among its device's rows (`jnp.roll` by one within the device's
block, run under `shard_map`: no data crosses devices), and the one-hot
(optionally smoothed) targets are mixed the same way.

CutMix as timm's Mixup class does it, in its 'batch' mode: lambda ~ Beta(a,
a), a box of (int(H sqrt(1 - lambda)), int(W sqrt(1 - lambda))) centred on a
uniform pixel and clipped to the image, pasted from the neighbour; the
targets mix by the box's actual area (timm's `correct_lam`). With both on,
a step uses CutMix with probability `switch_prob`; `prob` is the chance that
a step mixes at all. Label smoothing (timm's: 1 - s + s/K on the label, s/K
elsewhere) applies to the targets before they are mixed.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from vit_jax.parallel import BATCH_AXES
from vit_jax.train.config_keys import Mixing
from vit_jax.train.losses import smoothed_targets

# folded into the step's rng for the mixing draws (dropout keeps the step's rng)
MIX_STREAM = 0x4D1C


def draw(rng: jax.Array, mixing: Mixing, height: int, width: int
         ) -> tuple[jax.Array, jax.Array]:
  """One step's mixing, the same on every device: (keep, lam), `keep` (H, W)
  the weight of each example's own pixels (its neighbour's: 1 - keep), `lam`
  the weight of its own targets."""
  k_apply, k_switch, k_mixup, k_cutmix, k_row, k_col = jax.random.split(rng, 6)
  if mixing.mixup > 0:
    lam = jax.random.beta(k_mixup, mixing.mixup, mixing.mixup)
    lam = jnp.maximum(lam, 1.0 - lam)
    keep = jnp.full((height, width), lam)
  if mixing.cutmix > 0:
    inside, area = _box(k_row, k_col, jax.random.beta(k_cutmix, mixing.cutmix, mixing.cutmix),
                        height, width)
    cut_keep, cut_lam = 1.0 - inside.astype(jnp.float32), 1.0 - area / (height * width)
    if mixing.mixup > 0:
      use_cutmix = jax.random.uniform(k_switch) < mixing.switch_prob
      keep = jnp.where(use_cutmix, cut_keep, keep)
      lam = jnp.where(use_cutmix, cut_lam, lam)
    else:
      keep, lam = cut_keep, cut_lam
  apply = jax.random.uniform(k_apply) < mixing.prob
  return jnp.where(apply, keep, 1.0), jnp.where(apply, lam, 1.0)


def mix_rows(keep: jax.Array, lam: jax.Array, images: jax.Array, targets: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
  """(images float32, targets) of one device's rows, each mixed with the row
  before it (the first with the last)."""
  x = images.astype(jnp.float32)
  keep = keep[None, :, :, None]
  return (keep * x + (1.0 - keep) * jnp.roll(x, 1, axis=0),
          lam * targets + (1.0 - lam) * jnp.roll(targets, 1, axis=0))


def _box(k_row, k_col, lam, h: int, w: int) -> tuple[jax.Array, jax.Array]:
  """timm's rand_bbox: (mask (H, W) of the box, its area in pixels)."""
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = (jnp.floor(h * cut).astype(jnp.int32), jnp.floor(w * cut).astype(jnp.int32))
  cy = jax.random.randint(k_row, (), 0, h)
  cx = jax.random.randint(k_col, (), 0, w)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
  return inside, ((bottom - top) * (right - left)).astype(jnp.float32)


def make_mixer(mixing: Mixing, num_classes: int, label_smoothing: float,
               mesh: Optional[Mesh] = None) -> Optional[Callable]:
  """(rng, images, labels) -> (images, soft targets) of the whole batch: the
  draws made once (replicated), then each device mixing its own rows (`mesh`;
  None: one device, no shard_map); None when nothing mixes."""
  if not mixing.active:
    return None

  def local(keep, lam, images, labels):
    return mix_rows(keep, lam, images, smoothed_targets(labels, num_classes, label_smoothing))
  if mesh is not None:
    rows = P(BATCH_AXES)
    local = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), rows, rows),
                          out_specs=(rows, rows))

  def mixer(rng, images, labels):
    keep, lam = draw(rng, mixing, *images.shape[1:3])
    return local(keep, lam, images, labels)
  return mixer
