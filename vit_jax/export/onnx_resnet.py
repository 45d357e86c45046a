"""The R50+ViT hybrid's ResNet stem as ONNX operations (NCHW).

At inference a weight-standardised kernel is a fixed function of its
parameter, so the standardisation is folded into the kernels before they
are written (a generic converter that reads the raw kernels does not, and
gives wrong logits with no error). TF-style SAME padding becomes explicit asymmetric pads, the extra
pixel right and bottom; GroupNorm is an InstanceNormalization over the
channels regrouped, then the per-channel scale and bias.
"""
from __future__ import annotations

import math
import re

import numpy as np

from vit_jax.export.onnx_graph import GraphBuilder
from vit_jax.models.resnet import WS_EPS

STD_CONV = re.compile(r'^(conv_root|block\d+/unit\d+/conv(1|2|3|_proj))/kernel$')
GROUPS = 32  # flax.linen.GroupNorm's default, as the model uses it


def standardized_kernels(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The stem's kernels as the model convolves with them: the model's
  `weight_standardize`, (w - mean) / (std + eps) over each output channel,
  in float64 and rounded once to float32."""
  out = {}
  for key, w in params.items():
    if STD_CONV.match(key):
      w = np.asarray(w, np.float64)
      w = w - w.mean(axis=(0, 1, 2))
      out[key] = (w / (w.std(axis=(0, 1, 2)) + WS_EPS)).astype(np.float32)
  return out


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) of TF's SAME padding: the extra pixel after."""
  total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class Stem:
  """Writes the stem into a graph, tracking the (square) spatial size."""

  def __init__(self, g: GraphBuilder, kernels: dict[str, np.ndarray], group_norm_eps: float,
               size: int):
    self.g, self.kernels, self.eps, self.size = g, kernels, group_norm_eps, size

  def conv(self, x: str, scope: str, stride: int) -> str:
    hwio = self.kernels[f'{scope}/kernel']
    k = hwio.shape[0]
    before, after = same_pads(self.size, k, stride)
    self.size = math.ceil(self.size / stride)
    w = self.g.param(f'{scope}/kernel', hwio.transpose(3, 2, 0, 1))  # OIHW
    return self.g.op('Conv', [x, w], f'{scope}/out', kernel_shape=[k, k], strides=[stride] * 2,
                     pads=[before, before, after, after])

  def group_norm(self, x: str, scope: str) -> str:
    g = self.g
    channels = g.params[f'{scope}/scale'].shape[0]
    grouped = g.op('Reshape', [x, g.const([0, GROUPS, -1], f'{scope}/group_shape', np.int64)],
                   f'{scope}/grouped')
    y = g.op('InstanceNormalization', [grouped, g.const(np.ones(GROUPS), f'{scope}/ones'),
                                       g.const(np.zeros(GROUPS), f'{scope}/zeros')],
             f'{scope}/normalized', epsilon=float(self.eps))
    y = g.op('Reshape', [y, g.const([0, channels, self.size, self.size], f'{scope}/shape',
                                    np.int64)], f'{scope}/ungrouped')
    scale = g.param(f'{scope}/scale', g.params[f'{scope}/scale'].reshape(-1, 1, 1))
    bias = g.param(f'{scope}/bias', g.params[f'{scope}/bias'].reshape(-1, 1, 1))
    return g.op('Add', [g.op('Mul', [y, scale], f'{scope}/scaled'), bias], f'{scope}/out')

  def relu(self, x: str, scope: str) -> str:
    return self.g.op('Relu', [x], f'{scope}/relu')

  def unit(self, x: str, scope: str, stride: int) -> str:
    """Bottleneck unit with its projection, as `ResidualUnit`."""
    size = self.size
    residual = x
    if f'{scope}/conv_proj/kernel' in self.kernels:
      residual = self.group_norm(self.conv(x, f'{scope}/conv_proj', stride), f'{scope}/gn_proj')
      self.size = size
    y = self.relu(self.group_norm(self.conv(x, f'{scope}/conv1', 1), f'{scope}/gn1'),
                  f'{scope}/gn1')
    y = self.relu(self.group_norm(self.conv(y, f'{scope}/conv2', stride), f'{scope}/gn2'),
                  f'{scope}/gn2')
    y = self.group_norm(self.conv(y, f'{scope}/conv3', 1), f'{scope}/gn3')
    return self.relu(self.g.op('Add', [residual, y], f'{scope}/sum'), scope)

  def __call__(self, x: str, stages) -> str:
    """Root conv, GroupNorm, ReLU, 3x3/2 max pool, then the stages."""
    x = self.relu(self.group_norm(self.conv(x, 'conv_root', 2), 'gn_root'), 'gn_root')
    before, after = same_pads(self.size, 3, 2)
    self.size = math.ceil(self.size / 2)
    x = self.g.op('MaxPool', [x], 'root_pool', kernel_shape=[3, 3], strides=[2, 2],
                  pads=[before, before, after, after])
    for i, depth in enumerate(stages):
      for j in range(depth):
        x = self.unit(x, f'block{i + 1}/unit{j + 1}', 2 if i and not j else 1)
    return x
