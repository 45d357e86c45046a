"""The Vision Transformer (Dosovitskiy et al., 2020) in Flax Linen.

Module and parameter names follow the official Flax release
(`vit_jax/models_vit.py`), so a released `.npz` maps onto this tree with a
rename table only. Beyond it: a custom attention scale (the card's
vit_small_patch16_224 needs `768 ** -0.5`), a compute dtype separate from the
float32 parameters, the attention of `vit_jax.models.attention`, a last block
that computes only the class token when nothing else is read, rematerialised
blocks with a policy, and `scan_layers` (one compiled block scanned over
stacked parameters, `Transformer/encoderblock/...`, for deep models'
compile time; `vit_jax.checkpoints.scan_layout` converts).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import resnet
from vit_jax.models.attention import MultiHeadDotProductAttention

Dtype = Any


class AddPositionEmbs(nn.Module):
  """Adds learned position embeddings (class token included) to the tokens."""
  posemb_init: Callable = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pe = self.param('pos_embedding', self.posemb_init, (1,) + x.shape[1:], jnp.float32)
    return x + pe.astype(x.dtype)


def gelu(x: jax.Array, approximate: bool) -> jax.Array:
  """GELU; the exact one as x * Phi(x) through erf, the formula PyTorch uses
  (jax.nn.gelu's exact form goes through erfc, a longer expansion, for
  relative precision where the output is under 1e-4 anyway)."""
  if approximate:
    return nn.gelu(x, approximate=True)
  return x * (0.5 + 0.5 * jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


class MlpBlock(nn.Module):
  """Transformer MLP: Dense, GELU, Dense, each followed by dropout."""
  mlp_dim: int
  gelu_approximate: bool = True
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=nn.initializers.xavier_uniform(),
                              bias_init=nn.initializers.normal(stddev=1e-6))
    y = gelu(dense(self.mlp_dim)(x), self.gelu_approximate)
    y = nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)
    y = dense(x.shape[-1])(y)
    return nn.Dropout(rate=self.dropout_rate)(y, deterministic=deterministic)


class Encoder1DBlock(nn.Module):
  """Pre-norm Transformer block: x + MHA(LN(x)), then x + MLP(LN(x)).

  With `class_token_only` only the first token's output is computed (the
  others still serve as keys and values): what the last block of a
  class-token model needs.
  """
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
  def __call__(self, inputs: jax.Array, deterministic: bool = True,
               class_token_only: bool = False) -> jax.Array:
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(inputs)
    x = MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_bias=self.qkv_bias, scale=self.attn_scale,
        dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype)(x, deterministic, 1 if class_token_only else None)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    x = x + (inputs[:, :1] if class_token_only else inputs)
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, gelu_approximate=self.gelu_approximate,
                 dropout_rate=self.dropout_rate, dtype=self.dtype)(y, deterministic)
    return x + y


def remat_policy(name: Optional[str]) -> Optional[Callable]:
  """A `jax.checkpoint_policies` member by name; None saves nothing."""
  if name is None:
    return None
  policy = getattr(jax.checkpoint_policies, name, None)
  if policy is None or not callable(policy) or name.startswith('save_'):
    raise ValueError(f'remat_policy {name!r} is not a jax.checkpoint_policies policy; use e.g. '
                     "'dots_saveable', 'dots_with_no_batch_dims_saveable' or "
                     "'nothing_saveable'")
  return policy


class Encoder(nn.Module):
  """Position embeddings, `num_layers` blocks and the final LayerNorm.

  `class_token_only`: the output is read at the first token only, so the
  last block computes nothing else (not with `scan_layers`, whose blocks are
  one compiled body).
  """
  num_layers: int
  block: Callable[..., nn.Module]
  layer_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  remat: bool = False
  remat_policy: Optional[str] = None
  scan_layers: bool = False
  class_token_only: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = AddPositionEmbs(name='posembed_input')(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
    block_cls = Encoder1DBlock
    if self.remat:
      block_cls = nn.remat(Encoder1DBlock, static_argnums=(2, 3), prevent_cse=not self.scan_layers,
                           policy=remat_policy(self.remat_policy))
    if self.scan_layers:
      body = lambda block, x, _: (block(x, not train, False), None)  # noqa: E731
      scan = nn.scan(body, variable_axes={'params': 0}, length=self.num_layers,
                     split_rngs={'params': True, 'dropout': True})
      x, _ = scan(self.block(block_cls, name='encoderblock'), x, None)
    else:
      for i in range(self.num_layers):
        last = i == self.num_layers - 1
        x = self.block(block_cls, name=f'encoderblock_{i}')(
            x, not train, self.class_token_only and last)
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
  remat_policy: Optional[str] = None
  scan_layers: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    x = inputs.astype(self.dtype)
    if self.resnet is not None:
      x = resnet.stem(x, stages=tuple(self.resnet), group_norm_eps=self.group_norm_eps,
                      dtype=self.dtype)
    p = self.patch_size
    x = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                name='embedding')(x)
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
                dropout_rate=self.dropout_rate, remat=self.remat, remat_policy=self.remat_policy,
                scan_layers=self.scan_layers, class_token_only=self.classifier == 'token',
                dtype=self.dtype, name='Transformer')(x, train=train)

    x = x[:, 0] if self.classifier == 'token' else jnp.mean(x, axis=1)
    if self.representation_size is not None:
      x = jnp.tanh(nn.Dense(self.representation_size, dtype=self.dtype, name='pre_logits')(x))
    if not self.num_classes:
      return x.astype(jnp.float32)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                 kernel_init=nn.initializers.zeros,
                 bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x.astype(jnp.float32)
