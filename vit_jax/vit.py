"""The Vision Transformer (Dosovitskiy et al., 2020) in Flax Linen.

Module and parameter names follow the official Flax release
(`vit_jax/models_vit.py`), so a released `.npz` maps onto this tree with a
rename table only. Two things go beyond it: a custom attention scale (the
card's vit_small_patch16_224 needs `768 ** -0.5`) and a compute dtype separate
from the float32 parameters.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import resnet

Dtype = Any


class AddPositionEmbs(nn.Module):
  """Adds learned position embeddings (class token included) to the tokens."""
  posemb_init: Callable = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pe = self.param('pos_embedding', self.posemb_init, (1,) + x.shape[1:], jnp.float32)
    return x + pe.astype(x.dtype)


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention with the official release's query/key/value/out kernels.

  Uses `jax.nn.dot_product_attention` (a fused kernel where the backend has
  one) unless attention dropout is active, which needs the explicit weights.
  """
  num_heads: int
  qkv_bias: bool = True
  scale: Optional[float] = None
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    width = x.shape[-1]
    if width % self.num_heads:
      raise ValueError(f'hidden_size {width} is not divisible by num_heads {self.num_heads}')
    head_dim = width // self.num_heads
    proj = lambda name, bias: nn.DenseGeneral(  # noqa: E731
        (self.num_heads, head_dim), use_bias=bias, dtype=self.dtype,
        kernel_init=nn.initializers.xavier_uniform(), name=name)
    q = proj('query', self.qkv_bias)(x)
    k = proj('key', self.qkv_bias)(x)
    v = proj('value', self.qkv_bias)(x)
    scale = self.scale if self.scale is not None else head_dim ** -0.5
    if self.dropout_rate > 0.0 and not deterministic:
      logits = jnp.einsum('bqhd,bkhd->bhqk', q * jnp.asarray(scale, q.dtype), k)
      weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
      weights = nn.Dropout(rate=self.dropout_rate, broadcast_dims=())(weights, deterministic=False)
      y = jnp.einsum('bhqk,bkhd->bqhd', weights, v)
    else:
      y = jax.nn.dot_product_attention(q, k, v, scale=scale)
    return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype,
                           kernel_init=nn.initializers.xavier_uniform(), name='out')(y)


class MlpBlock(nn.Module):
  """Transformer MLP: Dense, GELU, Dense, each followed by dropout."""
  mlp_dim: int
  gelu_approximate: bool = True
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    dense = lambda n: nn.Dense(n, dtype=self.dtype,  # noqa: E731
                               kernel_init=nn.initializers.xavier_uniform(),
                               bias_init=nn.initializers.normal(stddev=1e-6))
    y = nn.gelu(dense(self.mlp_dim)(x), approximate=self.gelu_approximate)
    y = nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
    y = dense(x.shape[-1])(y)
    return nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)


class Encoder1DBlock(nn.Module):
  """Pre-norm Transformer block: x + MHA(LN(x)), then x + MLP(LN(x))."""
  mlp_dim: int
  num_heads: int
  qkv_bias: bool = True
  attn_scale: Optional[float] = None
  gelu_approximate: bool = True
  layer_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(inputs)
    x = MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_bias=self.qkv_bias, scale=self.attn_scale,
        dropout_rate=self.attention_dropout_rate, dtype=self.dtype)(x, deterministic)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    x = x + inputs
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, gelu_approximate=self.gelu_approximate,
                 dropout_rate=self.dropout_rate, dtype=self.dtype)(y, deterministic)
    return x + y


class Encoder(nn.Module):
  """Position embeddings, `num_layers` blocks and the final LayerNorm."""
  num_layers: int
  block: Callable[..., nn.Module]
  layer_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  remat: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = AddPositionEmbs(name='posembed_input')(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
    block_cls = nn.remat(Encoder1DBlock, static_argnums=(2,)) if self.remat else Encoder1DBlock
    for i in range(self.num_layers):
      x = self.block(block_cls, name=f'encoderblock_{i}')(x, not train)
    return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='encoder_norm')(x)


class VisionTransformer(nn.Module):
  """ViT classifier; with `resnet` stage depths it is the R50+ViT hybrid.

  Takes NHWC images normalised with the config's mean/std; returns logits
  (or the pre-logits features when `num_classes` is 0).
  """
  num_classes: int
  patch_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  qkv_bias: bool = True
  attn_scale: Optional[float] = None
  gelu_approximate: bool = False
  layer_norm_eps: float = 1e-6
  representation_size: Optional[int] = None
  classifier: str = 'token'
  resnet: Optional[Sequence[int]] = None
  group_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  head_bias_init: float = 0.0
  remat: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    x = inputs.astype(self.dtype)
    if self.resnet is not None:
      x = resnet.stem(x, stages=tuple(self.resnet), group_norm_eps=self.group_norm_eps,
                      dtype=self.dtype)
    x = nn.Conv(self.hidden_size, (self.patch_size, self.patch_size),
                strides=(self.patch_size, self.patch_size), padding='VALID',
                dtype=self.dtype, name='embedding')(x)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    if self.classifier == 'token':
      cls = self.param('cls', nn.initializers.zeros, (1, 1, c), jnp.float32)
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (n, 1, 1)), x], axis=1)
    elif self.classifier != 'gap':
      raise ValueError(f"classifier must be 'token' or 'gap', got {self.classifier!r}")

    block = lambda cls, name: cls(  # noqa: E731
        mlp_dim=self.mlp_dim, num_heads=self.num_heads, qkv_bias=self.qkv_bias,
        attn_scale=self.attn_scale, gelu_approximate=self.gelu_approximate,
        layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate, dtype=self.dtype, name=name)
    x = Encoder(num_layers=self.num_layers, block=block, layer_norm_eps=self.layer_norm_eps,
                dropout_rate=self.dropout_rate, remat=self.remat, dtype=self.dtype,
                name='Transformer')(x, train=train)

    x = x[:, 0] if self.classifier == 'token' else jnp.mean(x, axis=1)
    if self.representation_size is not None:
      x = jnp.tanh(nn.Dense(self.representation_size, dtype=self.dtype, name='pre_logits')(x))
    if not self.num_classes:
      return x.astype(jnp.float32)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                 kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x.astype(jnp.float32)
