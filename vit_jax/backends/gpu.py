"""The model's attention on GPUs in half precision: cuDNN's fused kernel.

`jax.nn.dot_product_attention(implementation='cudnn')` (flash attention)
takes bfloat16/float16 operands; where it refuses a shape or dtype at trace
time, or dropout is active, the model's own attention runs.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from vit_jax.models.attention import DotProductAttention

HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def interceptor(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
  module = context.module
  if type(module) is DotProductAttention and context.method_name == '__call__':
    q, k, v = args[:3]
    deterministic = args[3] if len(args) > 3 else kwargs.get('deterministic', True)
    if q.dtype in HALF and (deterministic or not module.dropout_rate):
      try:
        return jax.nn.dot_product_attention(q, k, v, scale=module.scale,
                                            implementation='cudnn')
      except (ValueError, NotImplementedError, RuntimeError):
        pass  # a shape or dtype cuDNN does not take
  return next_fun(*args, **kwargs)
