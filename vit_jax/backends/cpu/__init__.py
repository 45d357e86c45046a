"""The model's layers on one CPU device in float32: kernels where XLA:CPU is slow.

Each replacement takes the bound Flax module and its call's arguments and
returns the module's output computed by `vit_jax.backends.cpu.kernels`, or
None where it does not apply (another dtype, active dropout, a shape the
kernel does not take): then the module runs as written. Which of them this
machine uses is `vit_jax.backends.cpu.choice`'s; BENCHMARKS.md has what
each is worth.
- `DotProductAttention`: the fused attention kernel. XLA:CPU runs
  attention's batched matmuls on one thread; the kernel shares the
  (image, head) pairs among XLA's threads.
- `nn.Dense` and `nn.DenseGeneral`: a 2-D product whose weight gradient
  x^T dy reads a transposed copy of x made by the kernel. Given x as it is,
  XLA:CPU computes that product with its slow matmul.
- `nn.LayerNorm`: one kernel pass each way. XLA:CPU makes several fusions
  with slow column reductions.
- `MlpBlock`: its first bias and the GELU as one kernel pass each way.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Collection, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.backends.cpu import choice, kernels
from vit_jax.models.attention import DotProductAttention
from vit_jax.models.vit import MlpBlock


def _float32(module: nn.Module, *arrays: jax.Array) -> bool:
  dtype = getattr(module, 'dtype', None)
  return ((dtype is None or jnp.dtype(dtype) == jnp.float32)
          and all(a.dtype == jnp.float32 for a in arrays))


def _plain(module: nn.Module) -> bool:
  """A dense layer with Flax's default product (no precision or custom dot)."""
  return (module.precision is None and module.dot_general is None
          and module.dot_general_cls is None)


def _params(module: nn.Module) -> dict:
  return module.variables['params']


def dense(module: nn.Module, x: jax.Array) -> Optional[jax.Array]:
  """nn.Dense, or nn.DenseGeneral over trailing axes, as `kernels.linear`."""
  if isinstance(module, nn.DenseGeneral):
    axes = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    n_axes = len(axes)
    if module.batch_dims or sorted(a % x.ndim for a in axes) != list(
        range(x.ndim - n_axes, x.ndim)):
      return None
  else:
    n_axes = 1
  p = _params(module)
  if not (_plain(module) and _float32(module, x, p['kernel'])):
    return None
  n_in = math.prod(x.shape[-n_axes:])
  features = p['kernel'].shape[n_axes:]
  bias = p['bias'].reshape(-1) if module.use_bias else None
  y = kernels.linear(x.reshape(-1, n_in), p['kernel'].reshape(n_in, -1), bias)
  return y.reshape(x.shape[:-n_axes] + features)


def layer_norm(module: nn.LayerNorm, x: jax.Array) -> Optional[jax.Array]:
  """nn.LayerNorm over the last axis (a multiple of 16 wide) as the kernel."""
  if not (module.use_scale and module.use_bias and module.axis_name is None
          and module.reduction_axes == -1 and module.feature_axes == -1
          and x.shape[-1] % kernels.LANES == 0 and _float32(module, x)):
    return None
  p = _params(module)
  return kernels.layer_norm(x, p['scale'], p['bias'], module.epsilon)


def _matmul(x: jax.Array, kernel: jax.Array, bias: Optional[jax.Array]) -> jax.Array:
  """What nn.Dense computes: x @ kernel (+ bias), differentiated by XLA."""
  return x @ kernel if bias is None else x @ kernel + bias


def mlp(module: MlpBlock, x: jax.Array, deterministic: bool = True,
        linear: Callable[..., jax.Array] = kernels.linear) -> Optional[jax.Array]:
  """Dense, bias + GELU as one kernel, Dense (without dropout); the dense
  layers as `linear` computes them."""
  if (module.dropout_rate and not deterministic) or module.mlp_dim % kernels.LANES:
    return None
  p = _params(module)
  if not _float32(module, x):
    return None
  rows = x.reshape(-1, x.shape[-1])
  h = kernels.bias_gelu(linear(rows, p['Dense_0']['kernel'], None),
                        p['Dense_0']['bias'], module.gelu_approximate)
  y = linear(h, p['Dense_1']['kernel'], p['Dense_1']['bias'])
  return y.reshape(x.shape)


def attention(module: DotProductAttention, q: jax.Array, k: jax.Array, v: jax.Array,
              deterministic: bool = True) -> Optional[jax.Array]:
  """The fused kernel, for head_dim a multiple of 16 and no active dropout."""
  if ((module.dropout_rate and not deterministic) or q.shape[-1] % kernels.LANES
      or not _float32(module, q, k, v)):
    return None
  return kernels.attend(q, k, v, module.scale)


# By choice.LAYERS key: the module types each replaces and how.
REPLACEMENTS: dict[str, dict[type, Callable[..., Optional[jax.Array]]]] = {
    'attention': {DotProductAttention: attention},
    'dense': {nn.Dense: dense, nn.DenseGeneral: dense},
    'layer_norm': {nn.LayerNorm: layer_norm},
    'bias_gelu': {MlpBlock: mlp},
}


def replacements(layers: Collection[str]) -> dict[type, Callable[..., Optional[jax.Array]]]:
  """The module types that `layers` (choice.LAYERS keys) replace, and how."""
  out = {t: f for layer in layers for t, f in REPLACEMENTS[layer].items()}
  if MlpBlock in out and 'dense' not in layers:
    out[MlpBlock] = functools.partial(mlp, linear=_matmul)  # XLA's weight gradients
  return out


def interceptor(layers: Optional[Collection[str]] = None) -> Optional[Callable]:
  """The Flax method interceptor that applies the replacements of `layers`
  (default: those `choice.choices()` takes on this machine); None where
  there are none, or the kernels cannot be built (no C++ compiler): then
  XLA's code runs."""
  if layers is None:
    layers = [k for k, c in choice.choices().items() if c.kernel]
  if not layers or not kernels.available():
    return None
  replace = replacements(layers)

  def intercept(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    module = context.module
    fun = replace.get(type(module)) if context.method_name == '__call__' else None
    if fun is not None and not module.is_initializing():
      out = fun(module, *args, **kwargs)
      if out is not None:
        return out
    return next_fun(*args, **kwargs)
  return intercept
