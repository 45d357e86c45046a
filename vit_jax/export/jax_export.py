"""The jax-export route: the model as written, serialized as StableHLO.

`jax.export` lowers the model's `apply` with the parameters as constants,
for the CPU, CUDA and TPU at once, with a symbolic batch dimension: one file
that plain JAX deserialises and runs at any batch size, with no Flax and no
model code. The model is traced as written, never inside
`vit_jax.backends.for_devices`: JAX refuses to export the CPU kernels' FFI
calls and cuDNN's attention custom call, which carry no compatibility
guarantee.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vit_jax.models import registry

PLATFORMS = ('cpu', 'cuda', 'tpu')
# a serialized jax.export artifact is one flatbuffer, at most 2 GiB; the
# parameters are most of it (the program itself is a few hundred KB)
MAX_WEIGHT_BYTES = (1 << 31) - (64 << 20)


def weight_bytes(params: Any) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))


def serialize(cfg: ml_collections.ConfigDict, params: Any) -> bytes:
  """The serialized `Exported` of images (batch, S, S, 3) float32 -> logits,
  computing in `cfg.dtype`."""
  size = weight_bytes(params)
  if size > MAX_WEIGHT_BYTES:
    raise ValueError(f'model {cfg.name} cannot be written as a jax-export file: its '
                     f'{size / 1e9:.2f} GB of float32 weights exceed the 2 GiB one serialized '
                     'jax.export artifact holds; use --to onnx (weights in an external file)')
  model = registry.module_from_config(cfg)
  params = jax.tree.map(np.asarray, params)
  serve = jax.jit(lambda images: model.apply({'params': params}, images, train=False))
  batch, = jax.export.symbolic_shape('batch')
  images = jax.ShapeDtypeStruct((batch, cfg.image_size, cfg.image_size, 3), jnp.float32)
  exported = jax.export.export(serve, platforms=PLATFORMS)(images)
  return bytes(exported.serialize())
