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

big_vision's plain ViT (Beyer et al., 2022) is the same model with other
choices, each a field: fixed 2-D sin-cos position embeddings
(`posemb='sincos2d'`), position embeddings added before the class token is
prepended (`posemb_class_token=False`), multi-head attention pooling
(`classifier='map'`) or the first patch token (`'0'`), a head initialised
like any Dense layer (`head_zeroinit=False`), and stochastic depth
(`drop_path_rate`, as timm and AugReg train).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import resnet
from vit_jax.models.attention import MultiHeadDotProductAttention

Dtype = Any
POSEMBS = ('learn', 'sincos2d')
CLASSIFIERS = ('token', 'gap', 'map', '0')


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.) -> jax.Array:
  """Fixed (1, h * w, width) position embeddings of an h x w patch grid (MoCo v3,
  big_vision): a quarter of the channels each for sin(x), cos(x), sin(y),
  cos(y) at frequencies temperature ** -(i / (width / 4 - 1))."""
  if width % 4:
    raise ValueError(f"posemb 'sincos2d' needs a hidden_size divisible by 4, got {width}")
  y, x = jnp.mgrid[:h, :w]
  omega = 1. / (temperature ** (jnp.arange(width // 4) / (width // 4 - 1)))
  y = jnp.einsum('m,d->md', y.flatten(), omega)
  x = jnp.einsum('m,d->md', x.flatten(), omega)
  return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)[None]


class AddPositionEmbs(nn.Module):
  """Adds position embeddings to the tokens: learned, one per token ('learn'),
  or the fixed sin-cos of the `grid` of patches ('sincos2d'; tokens before the
  patches, the class token, get none)."""
  posemb: str = 'learn'
  grid: tuple[int, int] = (0, 0)
  posemb_init: Callable = nn.initializers.normal(stddev=0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.posemb == 'learn':
      pe = self.param('pos_embedding', self.posemb_init, (1,) + x.shape[1:], jnp.float32)
    elif self.posemb == 'sincos2d':
      pe = posemb_sincos_2d(*self.grid, x.shape[-1])
      pe = jnp.pad(pe, ((0, 0), (x.shape[1] - pe.shape[1], 0), (0, 0)))
    else:
      raise ValueError(f'posemb must be one of {POSEMBS}, got {self.posemb!r}')
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


class DropPath(nn.Module):
  """Stochastic depth (Huang et al., 2016): in training, the residual branch of
  each example is dropped with probability `rate` and kept ones are scaled
  by 1 / (1 - rate), as timm's DropPath. `rate` None: off."""

  @nn.compact
  def __call__(self, x: jax.Array, rate: Optional[jax.Array],
               deterministic: bool = True) -> jax.Array:
    if rate is None or deterministic:
      return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    kept = jax.random.bernoulli(self.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * (kept / jnp.where(keep > 0, keep, 1.0)).astype(x.dtype)  # rate 1: all dropped


class Encoder1DBlock(nn.Module):
  """Pre-norm Transformer block: x + MHA(LN(x)), then x + MLP(LN(x)).

  With `class_token_only` only the first token's output is computed (the
  others still serve as keys and values): what the last block of a
  class-token model needs. `drop_path_rate` (None: off) drops both residual
  branches of whole examples in training.
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
               class_token_only: bool = False,
               drop_path_rate: Optional[jax.Array] = None) -> jax.Array:
    x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(inputs)
    x = MultiHeadDotProductAttention(
        num_heads=self.num_heads, qkv_bias=self.qkv_bias, scale=self.attn_scale,
        dropout_rate=self.attention_dropout_rate,
        dtype=self.dtype)(x, deterministic, 1 if class_token_only else None)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=deterministic)
    x = DropPath()(x, drop_path_rate, deterministic)
    x = x + (inputs[:, :1] if class_token_only else inputs)
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(x)
    y = MlpBlock(mlp_dim=self.mlp_dim, gelu_approximate=self.gelu_approximate,
                 dropout_rate=self.dropout_rate, dtype=self.dtype)(y, deterministic)
    return x + DropPath()(y, drop_path_rate, deterministic)


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

  The class tokens `cls`, when given, are prepended before the position
  embeddings are added (`posemb_class_token`, the official order: they have
  a position of their own) or after (big_vision's). `class_token_only`: the
  output is read at the first token only, so the last block computes
  nothing else (not with `scan_layers`, whose blocks are one compiled body).
  Stochastic depth grows linearly over the blocks, from 0 to `drop_path_rate`.
  """
  num_layers: int
  block: Callable[..., nn.Module]
  layer_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  drop_path_rate: float = 0.0
  posemb: str = 'learn'
  posemb_class_token: bool = True
  grid: tuple[int, int] = (0, 0)
  remat: bool = False
  remat_policy: Optional[str] = None
  scan_layers: bool = False
  class_token_only: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               cls: Optional[jax.Array] = None) -> jax.Array:
    def prepend(x):
      return x if cls is None else jnp.concatenate([cls, x], axis=1)
    x = prepend(x) if self.posemb_class_token else x
    x = AddPositionEmbs(posemb=self.posemb, grid=self.grid, name='posembed_input')(x)
    x = x if self.posemb_class_token else prepend(x)
    x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
    block_cls = Encoder1DBlock
    if self.remat:
      block_cls = nn.remat(Encoder1DBlock, static_argnums=(2, 3), prevent_cse=not self.scan_layers,
                           policy=remat_policy(self.remat_policy))
    rates = (np.linspace(0.0, self.drop_path_rate, self.num_layers, dtype=np.float32)
             if self.drop_path_rate else None)
    if self.scan_layers:
      body = lambda block, x, rate: (block(x, not train, False, rate), None)  # noqa: E731
      scan = nn.scan(body, variable_axes={'params': 0}, length=self.num_layers,
                     split_rngs={'params': True, 'dropout': True})
      x, _ = scan(self.block(block_cls, name='encoderblock'), x, rates)
    else:
      for i in range(self.num_layers):
        last = i == self.num_layers - 1
        x = self.block(block_cls, name=f'encoderblock_{i}')(
            x, not train, self.class_token_only and last, None if rates is None else rates[i])
    return nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name='encoder_norm')(x)


class MAPHead(nn.Module):
  """Multi-head attention pooling (big_vision's MAPHead; the pooling of Lee et
  al., 2019): a learned probe attends to every token, then a pre-norm MLP
  residual; its output is the probe's."""
  num_heads: int
  mlp_dim: int
  gelu_approximate: bool = True
  layer_norm_eps: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    probe = self.param('probe', nn.initializers.xavier_uniform(), (1, 1, x.shape[-1]),
                       jnp.float32)
    probe = jnp.tile(probe.astype(x.dtype), (x.shape[0], 1, 1))
    x = MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)(x, queries=probe)
    y = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype)(x)
    x = x + MlpBlock(mlp_dim=self.mlp_dim, gelu_approximate=self.gelu_approximate,
                     dtype=self.dtype)(y)
    return x[:, 0]


class VisionTransformer(nn.Module):
  """ViT classifier; with `resnet` stage depths it is the R50+ViT hybrid.

  Takes NHWC images normalised with the config's mean/std; returns logits
  (or the pre-logits features when `num_classes` is 0). `classifier`: the
  class token ('token'), the mean of the tokens ('gap'), attention pooling
  ('map') or the first patch token ('0', big_vision's). `representation_size`
  None (or False): no pre-logits layer; True: one of the model's width.
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
  representation_size: Union[None, bool, int] = None
  classifier: str = 'token'
  posemb: str = 'learn'
  posemb_class_token: bool = True
  head_zeroinit: bool = True
  resnet: Optional[Sequence[int]] = None
  group_norm_eps: float = 1e-6
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  drop_path_rate: float = 0.0
  head_bias_init: float = 0.0
  remat: bool = False
  remat_policy: Optional[str] = None
  scan_layers: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, *, train: bool = False) -> jax.Array:
    if self.classifier not in CLASSIFIERS:
      raise ValueError(f'classifier must be one of {CLASSIFIERS}, got {self.classifier!r}')
    x = inputs.astype(self.dtype)
    if self.resnet is not None:
      x = resnet.stem(x, stages=tuple(self.resnet), group_norm_eps=self.group_norm_eps,
                      dtype=self.dtype)
    p = self.patch_size
    x = nn.Conv(self.hidden_size, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
                name='embedding')(x)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    cls = None
    if self.classifier == 'token':
      cls = self.param('cls', nn.initializers.zeros, (1, 1, c), jnp.float32)
      cls = jnp.tile(cls.astype(x.dtype), (n, 1, 1))

    block = lambda cls, name: cls(  # noqa: E731
        mlp_dim=self.mlp_dim, num_heads=self.num_heads, qkv_bias=self.qkv_bias,
        attn_scale=self.attn_scale, gelu_approximate=self.gelu_approximate,
        layer_norm_eps=self.layer_norm_eps, dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate, dtype=self.dtype, name=name)
    x = Encoder(num_layers=self.num_layers, block=block, layer_norm_eps=self.layer_norm_eps,
                dropout_rate=self.dropout_rate, drop_path_rate=self.drop_path_rate,
                posemb=self.posemb, posemb_class_token=self.posemb_class_token, grid=(h, w),
                remat=self.remat, remat_policy=self.remat_policy, scan_layers=self.scan_layers,
                class_token_only=self.classifier in ('token', '0'), dtype=self.dtype,
                name='Transformer')(x, train=train, cls=cls)

    if self.classifier == 'map':
      x = MAPHead(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                  gelu_approximate=self.gelu_approximate, layer_norm_eps=self.layer_norm_eps,
                  dtype=self.dtype)(x)
    else:
      x = jnp.mean(x, axis=1) if self.classifier == 'gap' else x[:, 0]
    rep = self.hidden_size if self.representation_size is True else self.representation_size
    if rep:
      x = jnp.tanh(nn.Dense(rep, dtype=self.dtype, name='pre_logits')(x))
    if not self.num_classes:
      return x.astype(jnp.float32)
    x = nn.Dense(self.num_classes, dtype=self.dtype, name='head',
                 kernel_init=(nn.initializers.zeros if self.head_zeroinit
                              else nn.linear.default_kernel_init),
                 bias_init=nn.initializers.constant(self.head_bias_init))(x)
    return x.astype(jnp.float32)
