"""Model FLOP utilisation (MFU): the model FLOPs of a step, from XLA's count,
and the dense bf16 peak of the device it runs on, from the datasheets.

One table for every reader: the training loop's log lines and the benchmark.
TPU figures are `vit_jax.plan.topology`'s per-chip ones, split over the JAX
devices of a chip (two on v2 and v3, one TensorCore each).
"""
from __future__ import annotations

import re
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from vit_jax.models import registry
from vit_jax.plan import topology

# jax's device_kind of each generation of topology.GENERATIONS (the names
# JAX's own TPU code matches)
TPU_KINDS = {'TPU v2': 'v2', 'TPU v3': 'v3', 'TPU v4': 'v4', 'TPU v5': 'v5p', 'TPU v5p': 'v5p',
             'TPU v5 lite': 'v5e', 'TPU v5e': 'v5e', 'TPU v6 lite': 'v6e', 'TPU v6e': 'v6e'}

# Dense bf16 tensor-core peaks of one GPU (TFLOP/s, without sparsity) from
# NVIDIA's datasheets, by a pattern of the CUDA device name jax reports
# ('NVIDIA H100 80GB HBM3' is the SXM part); the first match wins.
GPU_BF16_TFLOPS = (
    (r'H100 PCIe', 756.0),
    (r'H[12]00 NVL', 835.0),
    (r'H100|H200', 989.0),     # SXM, and GH200
    (r'GB200', 2500.0),
    (r'B200', 2250.0),
    (r'A100', 312.0),
    (r'L40S', 362.0),
    (r'\bL4$', 121.0),
)


def bf16_peak_tflops(device_kind: str) -> Optional[float]:
  """The dense bf16 peak of one JAX device of `device_kind` (as jax reports
  it), or None for a kind the tables do not know."""
  name = TPU_KINDS.get(device_kind)
  if name is not None:
    return next(g for g in topology.GENERATIONS if g.name == name).bf16_tflops_per_device
  return next((tflops for pattern, tflops in GPU_BF16_TFLOPS if re.search(pattern, device_kind)),
              None)


def forward_flops(model_config: ml_collections.ConfigDict) -> float:
  """XLA's count of one image's forward pass, the model as written on one
  device: what the output needs (the last block of a class-token model
  computes the class token only), elementwise work included. Lowered, not
  compiled."""
  model = registry.module_from_config(model_config)
  x = jax.ShapeDtypeStruct((1, model_config.image_size, model_config.image_size, 3),
                           jnp.float32)
  params = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  lowered = jax.jit(lambda p, x: model.apply(p, x)).lower(params, x)
  return float(lowered.cost_analysis()['flops'])


def train_flops(model_config: ml_collections.ConfigDict, batch_size: int) -> float:
  """The model FLOPs of a training step: the backward pass costs twice the
  forward, so three forwards per image (rematerialisation not counted)."""
  return 3 * batch_size * forward_flops(model_config)
