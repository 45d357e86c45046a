"""The ResNet-V1 stem of the R50+ViT hybrid, as the released weights expect.

Weight-standardised convolutions, GroupNorm (32 groups) and TF-style 'SAME'
padding (the extra pixel goes right/bottom), as in the official
`vit_jax/models_resnet.py`; timm's StdConv2dSame of the card's era agrees.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
WS_EPS = 1e-5


def weight_standardize(w: jax.Array, eps: float = WS_EPS) -> jax.Array:
  """(w - mean) / (std + eps) per output channel (biased std), in float32."""
  w = w.astype(jnp.float32)
  w = w - jnp.mean(w, axis=(0, 1, 2))
  return w / (jnp.std(w, axis=(0, 1, 2)) + eps)


class StdConv(nn.Conv):
  """Conv whose kernel is weight-standardised at every call."""

  def param(self, name, *args, **kwargs):
    p = super().param(name, *args, **kwargs)
    return weight_standardize(p) if name == 'kernel' else p


class ResidualUnit(nn.Module):
  """Bottleneck unit (1x1, 3x3 with the stride, 1x1 to 4x) with projection."""
  features: int
  strides: tuple[int, int] = (1, 1)
  group_norm_eps: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda f, k, name, s=(1, 1): StdConv(  # noqa: E731
        f, k, strides=s, use_bias=False, dtype=self.dtype, name=name)
    gn = lambda name, **kw: nn.GroupNorm(  # noqa: E731
        epsilon=self.group_norm_eps, dtype=self.dtype, name=name, **kw)
    residual = x
    if x.shape[-1] != self.features * 4 or self.strides != (1, 1):
      residual = conv(self.features * 4, (1, 1), 'conv_proj', self.strides)(x)
      residual = gn('gn_proj')(residual)
    y = nn.relu(gn('gn1')(conv(self.features, (1, 1), 'conv1')(x)))
    y = nn.relu(gn('gn2')(conv(self.features, (3, 3), 'conv2', self.strides)(y)))
    y = gn('gn3', scale_init=nn.initializers.zeros)(conv(self.features * 4, (1, 1), 'conv3')(y))
    return nn.relu(residual + y)


class ResNetStage(nn.Module):
  """`block_size` units; the first one carries the stride."""
  block_size: int
  features: int
  first_stride: tuple[int, int] = (1, 1)
  group_norm_eps: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for j in range(self.block_size):
      x = ResidualUnit(self.features, strides=self.first_stride if j == 0 else (1, 1),
                       group_norm_eps=self.group_norm_eps, dtype=self.dtype,
                       name=f'unit{j + 1}')(x)
    return x


def stem(x: jax.Array, stages: Sequence[int], group_norm_eps: float,
         dtype: Dtype) -> jax.Array:
  """Root conv + pool and the stages; builds its modules in the caller's scope.

  Called from inside a compact method so that `conv_root`, `gn_root` and
  `block{i}/unit{j}` sit at the top of the parameter tree, as released.
  """
  width = 64
  x = StdConv(width, (7, 7), strides=(2, 2), use_bias=False, dtype=dtype, name='conv_root')(x)
  x = nn.relu(nn.GroupNorm(epsilon=group_norm_eps, dtype=dtype, name='gn_root')(x))
  x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')
  for i, depth in enumerate(stages):
    x = ResNetStage(depth, width * 2 ** i, first_stride=(2, 2) if i else (1, 1),
                    group_norm_eps=group_norm_eps, dtype=dtype, name=f'block{i + 1}')(x)
  return x
