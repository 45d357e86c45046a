"""Float32 kernels for XLA:CPU, from `csrc/*.cc`, where XLA:CPU is slow
(BENCHMARKS.md):
- fused attention (`attention.cc`): XLA:CPU computes attention's batched
  matmuls on one thread; the kernel shares the (image, head) pairs among
  XLA's intra-op threads and keeps each pair's scores in cache;
- a dense layer whose weight gradient x^T dy reads a transposed copy of x
  made by the kernel (`transpose.cc`): given x as it is, XLA:CPU computes
  that product with its own matmul at under half the speed of its YNNPACK
  one, and its own transposes of these shapes are slower than the difference;
- LayerNorm (`layer_norm.cc`), one pass over the rows forward and one
  backward: XLA:CPU's takes four times as long;
- the MLP's bias and GELU (`gelu.cc`), one pass each way, the bias's
  gradient summed in the backward one: XLA:CPU makes three.

The library is compiled with the machine's
C++ compiler on first use, for this CPU (`-march=native`: vectors of 16
floats with AVX-512, of 8 elsewhere), into `$VIT_JAX_CACHE` (default
`~/.cache/vit_jax`); where that fails (no compiler, no headers),
`available()` is False and the model keeps XLA's layers, with one warning
saying why. `instruction_set()` says what the library was built for: which
kernels beat XLA:CPU depends on it (`vit_jax.backends.cpu.choice`).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

KERNELS = Path(__file__).parent / 'csrc'
FORWARD, BACKWARD = 'vit_attention_cpu_forward', 'vit_attention_cpu_backward'
INFERENCE = 'vit_attention_cpu_inference'
TRANSPOSE = 'vit_transpose_cpu'
NORM_FORWARD, NORM_BACKWARD = 'vit_layer_norm_cpu_forward', 'vit_layer_norm_cpu_backward'
GELU_FORWARD, GELU_BACKWARD = 'vit_gelu_cpu_forward', 'vit_gelu_cpu_backward'
_SYMBOLS = {FORWARD: 'VitAttentionForward', INFERENCE: 'VitAttentionInference',
            BACKWARD: 'VitAttentionBackward', TRANSPOSE: 'VitTranspose',
            NORM_FORWARD: 'VitLayerNormForward', NORM_BACKWARD: 'VitLayerNormBackward',
            GELU_FORWARD: 'VitGeluForward', GELU_BACKWARD: 'VitGeluBackward'}
LANES = 16  # head_dim and the widths the kernels take are multiples of it


def _cache_dir() -> Path:
  return Path(os.environ.get('VIT_JAX_CACHE', Path.home() / '.cache' / 'vit_jax'))


def _cpu_identity() -> str:
  """The CPU's model and feature flags: `-march=native` code runs only on its
  kind, and a cache in a shared home directory may see several kinds."""
  try:
    lines = Path('/proc/cpuinfo').read_text().splitlines()
  except OSError:
    return platform.machine() + platform.processor()
  wanted = ('model name', 'flags', 'Features')
  return '\n'.join(sorted({line for line in lines if line.startswith(wanted)}))


def _compile(folder: Path, include_dir: str) -> Path:
  """The shared library of the kernels in `folder` (its `.cc` files, which
  include its headers), built once per source, jax version, compiler and
  kind of CPU, as one translation unit: XLA's FFI header then compiles
  once, not once per file (7 s instead of 12 here)."""
  compiler = os.environ.get('CXX', 'c++')
  if shutil.which(compiler) is None:
    raise RuntimeError(f'no C++ compiler {compiler!r} (set CXX)')
  flags = ['-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', f'-I{include_dir}']
  files = sorted(folder.glob('*.cc')) + sorted(folder.glob('*.h'))
  sources = b''.join(f.name.encode() + f.read_bytes() for f in files)
  key = hashlib.sha256(sources + ' '.join(
      [compiler, jax.__version__, _cpu_identity()] + flags).encode()).hexdigest()[:16]
  target = _cache_dir() / f'cpu_kernels-{key}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    unity, built = Path(tmp) / 'kernels.cc', Path(tmp) / target.name
    unity.write_text(''.join(f'#include "{f.resolve()}"\n' for f in files if f.suffix == '.cc'))
    run = subprocess.run([compiler, *flags, str(unity), '-o', str(built)],
                         capture_output=True, text=True)
    if run.returncode:
      raise RuntimeError(f'{compiler} failed on {folder}: {run.stderr.strip()[-500:]}')
    os.replace(built, target)  # atomic: concurrent processes each build, one file wins
  return target


@functools.lru_cache(maxsize=None)
def _library() -> Optional[ctypes.CDLL]:
  """The built library, its kernels registered with XLA:CPU (once per
  process); None, with one warning, where it cannot be built."""
  try:
    library = ctypes.cdll.LoadLibrary(str(_compile(KERNELS, jax.ffi.include_dir())))
  except (OSError, RuntimeError) as e:
    logging.warning("CPU kernels unavailable, using XLA's layers: %s", e)
    return None
  for target, symbol in _SYMBOLS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform='cpu')
  return library


def available() -> bool:
  """Whether the kernels are built and registered with XLA:CPU."""
  return _library() is not None


def instruction_set() -> Optional[str]:
  """What the library was built for: 'avx512' (AVX-512F), 'avx2' (AVX2 and
  FMA, no AVX-512), 'x86-64' (neither), 'aarch64' or 'other'; None where
  it cannot be built."""
  library = _library()
  if library is None:
    return None
  name = library.VitInstructionSet
  name.restype = ctypes.c_char_p
  return name().decode()


def _forward(q, k, v, scale):
  """(y, the softmax weights (batch, heads, queries, tokens rounded up to LANES))."""
  b, tq, h, _ = q.shape
  padded = -(-k.shape[1] // LANES) * LANES
  return jax.ffi.ffi_call(
      FORWARD, (jax.ShapeDtypeStruct(q.shape, q.dtype),
                jax.ShapeDtypeStruct((b, h, tq, padded), jnp.float32)),
      vmap_method='sequential')(q, k, v, scale=np.float32(scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attend(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
  """softmax(q k^T * scale) v for q (batch, queries, heads, head_dim), k and v
  (batch, tokens, heads, head_dim), float32; needs `available()`.
  Undifferentiated, the kernel keeps no weights."""
  return jax.ffi.ffi_call(INFERENCE, jax.ShapeDtypeStruct(q.shape, q.dtype),
                          vmap_method='sequential')(q, k, v, scale=np.float32(scale))


def _attend_fwd(q, k, v, scale):
  y, weights = _forward(q, k, v, scale)
  return y, (q, k, v, y, weights)


def _attend_bwd(scale, residuals, dy):
  q, k, v, y, weights = residuals
  return jax.ffi.ffi_call(
      BACKWARD, tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (q, k, v)),
      vmap_method='sequential')(q, k, v, y, weights, dy, scale=np.float32(scale))


attend.defvjp(_attend_fwd, _attend_bwd)


def transpose(x: jax.Array) -> jax.Array:
  """x.T of a float32 matrix, materialised; needs `available()`."""
  return jax.ffi.ffi_call(TRANSPOSE, jax.ShapeDtypeStruct(x.shape[::-1], x.dtype),
                          vmap_method='sequential')(x)


@jax.custom_vjp
def linear(x: jax.Array, kernel: jax.Array, bias: Optional[jax.Array]) -> jax.Array:
  """x @ kernel (+ bias) over the last axis of x, float32; needs `available()`."""
  return x @ kernel if bias is None else x @ kernel + bias


def _linear_fwd(x, kernel, bias):
  return linear(x, kernel, bias), (x, kernel, bias)


def _linear_bwd(residuals, dy):
  x, kernel, bias = residuals
  rows, dy_rows = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
  return (dy @ kernel.T, transpose(rows) @ dy_rows, None if bias is None else dy_rows.sum(0))


linear.defvjp(_linear_fwd, _linear_bwd)


def _norm_forward(x, scale, bias, eps):
  """(y, each row's mean, each row's 1 / sqrt(variance + eps))."""
  rows = x.shape[:-1]
  return jax.ffi.ffi_call(
      NORM_FORWARD, (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(rows, x.dtype),
                     jax.ShapeDtypeStruct(rows, x.dtype)),
      vmap_method='sequential')(x, scale, bias, eps=np.float32(eps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
  """LayerNorm over the last axis (a multiple of 16 wide) with nn.LayerNorm's
  values (the variance in two passes over each row, not as E[x^2] - E[x]^2),
  float32; needs `available()`."""
  return _norm_forward(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
  y, mean, rstd = _norm_forward(x, scale, bias, eps)
  return y, (x, scale, mean, rstd)


def _layer_norm_bwd(eps, residuals, dy):
  x, scale, mean, rstd = residuals
  return jax.ffi.ffi_call(
      NORM_BACKWARD, (jax.ShapeDtypeStruct(x.shape, x.dtype),
                      jax.ShapeDtypeStruct(scale.shape, scale.dtype),
                      jax.ShapeDtypeStruct(scale.shape, scale.dtype)),
      vmap_method='sequential')(x, scale, mean, rstd, dy)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def bias_gelu(z: jax.Array, bias: jax.Array, approximate: bool) -> jax.Array:
  """gelu(z + bias) over the last axis (a multiple of 16 wide), float32: the
  exact GELU with erf as XLA computes it, or the tanh approximation; needs
  `available()`."""
  return jax.ffi.ffi_call(GELU_FORWARD, jax.ShapeDtypeStruct(z.shape, z.dtype),
                          vmap_method='sequential')(z, bias, approximate=approximate)


def _bias_gelu_fwd(z, bias, approximate):
  return bias_gelu(z, bias, approximate), (z, bias)


def _bias_gelu_bwd(approximate, residuals, dh):
  z, bias = residuals
  return jax.ffi.ffi_call(
      GELU_BACKWARD, (jax.ShapeDtypeStruct(z.shape, z.dtype),
                      jax.ShapeDtypeStruct(bias.shape, bias.dtype)),
      vmap_method='sequential')(z, bias, dh, approximate=approximate)


bias_gelu.defvjp(_bias_gelu_fwd, _bias_gelu_bwd)
