"""Multi-head self-attention with the official release's parameters, computed fast.

The parameters are those of the release (`query`, `key`, `value` kernels
(width, heads, head_dim) and `out` (heads, head_dim, width)), so `.npz` files
map by name. The computation is not the textbook one, for speed:
- the softmax normalisation is applied after the value product (to a
  (tokens, head_dim) array instead of the (tokens, tokens) weights), on
  (batch, heads, tokens, head_dim) operands, the layout XLA's batched
  matmuls take without copies; scores and their exponentials are float32
  whatever the compute dtype;
- `query_tokens` restricts the queries to the first tokens: the last block
  of a class-token model only needs the class token's output;
- on GPUs in bfloat16/float16, cuDNN's fused flash attention through
  `jax.nn.dot_product_attention` (`attention_impl='auto'` or `'cudnn'`);
- on one CPU device in float32, the fused kernel of `vit_jax.cpu_kernels`
  (`'auto'` where it builds, or `'cpu'`): XLA:CPU runs the batched matmuls
  above on one thread; the projections then run as 2-D products
  (`vit_jax.dense.Dense`).
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import cpu_kernels
from vit_jax.dense import Dense

Dtype = Any
ATTENTION_IMPLS = ('auto', 'xla', 'cudnn', 'cpu')


def resolve_impl(impl: str, dtype: Dtype, head_dim: int, backend: Optional[str] = None) -> str:
  """'auto' picks cuDNN flash attention on GPUs in half precision, the CPU
  kernel on a single CPU device in float32 (where it builds and head_dim is
  a multiple of 16; several devices would all-gather its operands), else XLA."""
  if impl not in ATTENTION_IMPLS:
    raise ValueError(f'attention_impl must be one of {ATTENTION_IMPLS}, got {impl!r}')
  backend = backend or jax.default_backend()
  float32 = jnp.dtype(dtype) == jnp.dtype(jnp.float32)
  cpu_ok = backend == 'cpu' and float32 and head_dim % cpu_kernels.LANES == 0
  if impl == 'cpu' and not (cpu_ok and cpu_kernels.available()):
    raise ValueError(f"attention_impl='cpu' needs the CPU backend, float32 and a head_dim "
                     f'that is a multiple of {cpu_kernels.LANES} (got {backend}, '
                     f'{jnp.dtype(dtype).name}, {head_dim}) and a C++ compiler; use '
                     "'auto' or 'xla'")
  if impl != 'auto':
    return impl
  if backend == 'gpu' and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return 'cudnn'
  if cpu_ok and jax.device_count() == 1 and cpu_kernels.available():
    return 'cpu'
  return 'xla'


def uses_cpu_kernels(impl: str, dtype: Dtype, width: int, num_heads: int) -> bool:
  """Whether a model of this width and head count takes the CPU kernels'
  path: its attention, dense layers and patch embedding."""
  return resolve_impl(impl, dtype, width // num_heads) == 'cpu'


def attend(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
  """softmax(q k^T * scale) v for (batch, tokens, heads, head_dim) arrays,
  normalised after the value product, statistics in float32."""
  q = (q * jnp.asarray(scale, q.dtype)).transpose(0, 2, 1, 3)
  scores = jnp.einsum('bhqd,bhkd->bhqk', q, k.transpose(0, 2, 1, 3),
                      preferred_element_type=jnp.float32)
  e = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
  y = jnp.einsum('bhqk,bhkd->bhqd', e.astype(v.dtype), v.transpose(0, 2, 1, 3),
                 preferred_element_type=jnp.float32)
  y = y / e.sum(axis=-1, keepdims=True)
  return y.astype(v.dtype).transpose(0, 2, 1, 3)


def attention_weights(q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
  """The explicit (batch, heads, queries, keys) softmax weights, float32."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32)
  return jax.nn.softmax(logits * scale, axis=-1)


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention over (batch, tokens, width); queries from the first
  `query_tokens` tokens when given. Attention dropout, when active, needs
  the explicit weights and takes the textbook path."""
  num_heads: int
  qkv_bias: bool = True
  scale: Optional[float] = None
  dropout_rate: float = 0.0
  attention_impl: str = 'auto'
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               query_tokens: Optional[int] = None) -> jax.Array:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f'hidden_size {width} is not divisible by num_heads {self.num_heads}')
    heads, head_dim = self.num_heads, width // self.num_heads
    impl = resolve_impl(self.attention_impl, self.dtype, head_dim)
    dense = lambda name, features=(heads, head_dim), **kw: Dense(  # noqa: E731
        features, cpu_kernels=impl == 'cpu', dtype=self.dtype, name=name, **kw)
    dropout = self.dropout_rate > 0.0 and not deterministic
    in_kernel = impl == 'cpu' and not dropout  # the kernel adds q, k and v's biases
    # three projections, not one over concatenated kernels: the concatenation
    # and its split in the backward pass cost more than the larger matmul saves
    queries = x if query_tokens is None else x[:, :query_tokens]
    (q, bq), (k, bk), (v, bv) = (
        dense(name, use_bias=self.qkv_bias, defer_bias=True)(inputs)
        for name, inputs in (('query', queries), ('key', x), ('value', x)))
    biases = None if bq is None else (bq, bk, bv)
    if biases is not None and not in_kernel:
      q, k, v, biases = q + bq, k + bk, v + bv, None
    # for attention maps (predict.py); free otherwise
    self.sow('intermediates', 'queries', q if biases is None else q + bq)
    self.sow('intermediates', 'keys', k if biases is None else k + bk)
    scale = self.scale if self.scale is not None else head_dim ** -0.5
    if dropout:
      w = attention_weights(q, k, scale).astype(self.dtype)
      w = nn.Dropout(rate=self.dropout_rate, broadcast_dims=())(w, deterministic=False)
      y = jnp.einsum('bhqk,bkhd->bqhd', w, v)
    elif impl == 'cudnn':
      y = jax.nn.dot_product_attention(q, k, v, scale=scale, implementation='cudnn')
    elif impl == 'cpu':
      y = cpu_kernels.attend(q, k, v, scale, biases)
    else:
      y = attend(q, k, v, scale)
    return dense('out', width, in_axes=2)(y)
