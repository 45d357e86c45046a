"""Dense layers with `nn.DenseGeneral`'s parameters whose products can run
through `vit_jax.cpu_kernels`.

`DenseGeneral` contracts the last `in_axes` axes of the input with a kernel
shaped (*in_shape, *features); the attention projections are such layers
((width,) -> (heads, head_dim) and back), the MLP's are plain ones. On the
CPU kernels' path the product is a 2-D `cpu_kernels.linear` over the
flattened axes (bitcasts in row-major layout): XLA:CPU otherwise copies the
projections' weights and gradients between layouts and computes their
weight gradients with its slow matmul (BENCHMARKS.md). Elsewhere it is the
`dot_general` of `DenseGeneral`, unchanged.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import cpu_kernels

Dtype = Any


class Dense(nn.Module):
  """y = x @ kernel + bias over the last `in_axes` axes of x; with
  `defer_bias`, (x @ kernel, bias or None) for a consumer that adds the bias
  itself (the CPU attention kernel: one pass over q, k and v fewer)."""
  features: Union[int, tuple[int, ...]]
  in_axes: int = 1
  use_bias: bool = True
  defer_bias: bool = False
  cpu_kernels: bool = False
  kernel_init: Callable = nn.initializers.xavier_uniform()
  bias_init: Callable = nn.initializers.zeros
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> Union[jax.Array, tuple[jax.Array, Optional[jax.Array]]]:
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    in_shape = x.shape[-self.in_axes:]
    n_in, n_out = math.prod(in_shape), math.prod(features)
    init = lambda key, shape, dtype: jnp.reshape(  # noqa: E731 -- DenseGeneral's fan-in/out
        self.kernel_init(key, (n_in, n_out), dtype), shape)
    kernel = self.param('kernel', init, in_shape + features, jnp.float32).astype(self.dtype)
    bias = (self.param('bias', self.bias_init, features, jnp.float32).astype(self.dtype)
            if self.use_bias else None)
    x = x.astype(self.dtype)
    lead = x.shape[:-self.in_axes]
    added = None if self.defer_bias else bias
    if self.cpu_kernels:
      y = cpu_kernels.linear(x.reshape(-1, n_in), kernel.reshape(n_in, n_out),
                             None if added is None else added.reshape(n_out))
      y = y.reshape(lead + features)
    else:
      contract = tuple(range(len(lead), x.ndim)), tuple(range(self.in_axes))
      y = jax.lax.dot_general(x, kernel, (contract, ((), ())))
      y = y if added is None else y + added
    return (y, bias) if self.defer_bias else y
