"""Multi-head self-attention with the official release's parameters.

The parameters are those of the release (`query`, `key`, `value` kernels
(width, heads, head_dim) and `out` (heads, head_dim, width)), so `.npz` files
map by name. The softmax is normalised after the value product (a
(tokens, head_dim) array instead of the (tokens, tokens) weights), on
(batch, heads, tokens, head_dim) operands, and its scores and statistics
are float32 in any compute dtype. `query_tokens` restricts the queries to
the first tokens: the last block of a class-token model needs only the class
token's output. `queries` takes them from other inputs (attention pooling's
probe).
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def attend(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
  """softmax(q k^T * scale) v for (batch, tokens, heads, head_dim) arrays,
  normalised after the value product; scores and statistics in float32."""
  q = (q * jnp.asarray(scale, q.dtype)).transpose(0, 2, 1, 3)
  scores = jnp.einsum('bhqd,bhkd->bhqk', q, k.transpose(0, 2, 1, 3),
                      preferred_element_type=jnp.float32)
  e = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
  # the value product in the compute dtype, so that its gradients are products
  # of that dtype too; the normalisation in float32
  y = jnp.einsum('bhqk,bhkd->bhqd', e.astype(v.dtype), v.transpose(0, 2, 1, 3))
  y = y.astype(jnp.float32) / e.sum(axis=-1, keepdims=True)
  return y.astype(v.dtype).transpose(0, 2, 1, 3)


def attention_weights(q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
  """The explicit (batch, heads, queries, keys) softmax weights, float32."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32)
  return jax.nn.softmax(logits * scale, axis=-1)


class DotProductAttention(nn.Module):
  """softmax(q k^T * scale) v over (batch, tokens, heads, head_dim) arrays;
  attention dropout, when active, needs the explicit weights."""
  scale: float
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array,
               deterministic: bool = True) -> jax.Array:
    if self.dropout_rate == 0.0 or deterministic:
      return attend(q, k, v, self.scale)
    w = attention_weights(q, k, self.scale).astype(v.dtype)
    w = nn.Dropout(rate=self.dropout_rate, broadcast_dims=())(w, deterministic=False)
    return jnp.einsum('bhqk,bkhd->bqhd', w, v)


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention over (batch, tokens, width); queries from the first
  `query_tokens` tokens or from `queries` when given; `scale` None means
  head_dim ** -0.5."""
  num_heads: int
  qkv_bias: bool = True
  scale: Optional[float] = None
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True,
               query_tokens: Optional[int] = None,
               queries: Optional[jax.Array] = None) -> jax.Array:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f'hidden_size {width} is not divisible by num_heads {self.num_heads}')
    head_dim = width // self.num_heads
    dense = functools.partial(nn.DenseGeneral, kernel_init=nn.initializers.xavier_uniform(),
                              dtype=self.dtype)
    # three projections, not one over concatenated kernels: the concatenation
    # and its split in the backward pass cost more than the larger matmul saves
    if queries is None:
      queries = x if query_tokens is None else x[:, :query_tokens]
    q, k, v = (dense((self.num_heads, head_dim), use_bias=self.qkv_bias, name=name)(inputs)
               for name, inputs in (('query', queries), ('key', x), ('value', x)))
    self.sow('intermediates', 'queries', q)  # for attention maps (predict.py); free otherwise
    self.sow('intermediates', 'keys', k)
    scale = self.scale if self.scale is not None else head_dim ** -0.5
    y = DotProductAttention(scale, self.dropout_rate)(q, k, v, deterministic)
    return dense(width, axis=(-2, -1), name='out')(y)
