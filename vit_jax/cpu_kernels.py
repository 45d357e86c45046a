"""Float32 kernels for XLA:CPU, from `kernels/cpu_kernels.cc`, where XLA:CPU
is slow (BENCHMARKS.md):
- fused attention: XLA:CPU computes attention's batched matmuls on one
  thread; the kernel shares the (image, head) pairs among XLA's intra-op
  threads and keeps each pair's scores in cache;
- a dense layer whose weight gradient x^T dy reads a transposed copy of x
  made by the kernel: given x as it is, XLA:CPU computes that product
  with its own matmul at under half the speed of its YNNPACK one, and its
  own transposes of these shapes are slower than the difference.

The library is compiled with the machine's
C++ compiler on first use, for this CPU (`-march=native`), into
`$VIT_JAX_CACHE` (default `~/.cache/vit_jax`); where that fails (no
compiler, no headers), `available()` is False and the model keeps XLA's
attention, with one warning saying why.
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

SOURCE = Path(__file__).parent / 'kernels' / 'cpu_kernels.cc'
FORWARD, BACKWARD = 'vit_attention_cpu_forward', 'vit_attention_cpu_backward'
INFERENCE = 'vit_attention_cpu_inference'
TRANSPOSE = 'vit_transpose_cpu'
LANES = 16  # the kernel's vector width in floats: head_dim must be a multiple


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


def _compile(source: Path, include_dir: str) -> Path:
  """The shared library for `source`, built once per source, jax version,
  compiler and kind of CPU."""
  compiler = os.environ.get('CXX', 'c++')
  if shutil.which(compiler) is None:
    raise RuntimeError(f'no C++ compiler {compiler!r} (set CXX)')
  flags = ['-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', f'-I{include_dir}']
  key = hashlib.sha256(source.read_bytes() + ' '.join(
      [compiler, jax.__version__, _cpu_identity()] + flags).encode()).hexdigest()[:16]
  target = _cache_dir() / f'cpu_kernels-{key}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
    built = Path(tmp) / target.name
    run = subprocess.run([compiler, *flags, str(source), '-o', str(built)],
                         capture_output=True, text=True)
    if run.returncode:
      raise RuntimeError(f'{compiler} failed on {source}: {run.stderr.strip()[-500:]}')
    os.replace(built, target)  # atomic: concurrent processes each build, one file wins
  return target


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the kernels are built and registered with XLA:CPU (once per process)."""
  try:
    library = ctypes.cdll.LoadLibrary(str(_compile(SOURCE, jax.ffi.include_dir())))
  except (OSError, RuntimeError) as e:
    logging.warning("CPU kernels unavailable, using XLA's attention and matmuls: %s", e)
    return False
  jax.ffi.register_ffi_target(FORWARD, jax.ffi.pycapsule(library.VitAttentionForward),
                              platform='cpu')
  jax.ffi.register_ffi_target(INFERENCE, jax.ffi.pycapsule(library.VitAttentionInference),
                              platform='cpu')
  jax.ffi.register_ffi_target(BACKWARD, jax.ffi.pycapsule(library.VitAttentionBackward),
                              platform='cpu')
  jax.ffi.register_ffi_target(TRANSPOSE, jax.ffi.pycapsule(library.VitTranspose), platform='cpu')
  return True


def _forward(q, k, v, scale):
  """(y, the softmax weights (batch, heads, queries, tokens rounded up to LANES))."""
  b, tq, h, _ = q.shape
  padded = -(-k.shape[1] // LANES) * LANES
  return jax.ffi.ffi_call(
      FORWARD, (jax.ShapeDtypeStruct(q.shape, q.dtype),
                jax.ShapeDtypeStruct((b, h, tq, padded), jnp.float32)),
      vmap_method='sequential')(q, k, v, scale=np.float32(scale))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attend(q: jax.Array, k: jax.Array, v: jax.Array, scale: float,
           biases: Optional[tuple[jax.Array, jax.Array, jax.Array]] = None) -> jax.Array:
  """softmax((q + bq) (k + bk)^T * scale) (v + bv) for q (batch, queries,
  heads, head_dim), k and v (batch, tokens, heads, head_dim) and the
  projections' biases (heads, head_dim) or None, float32; needs
  `available()`. Undifferentiated, the kernel adds the biases and keeps no
  weights."""
  if biases is None:
    biases = (jnp.zeros(q.shape[2:], q.dtype),) * 3
  return jax.ffi.ffi_call(INFERENCE, jax.ShapeDtypeStruct(q.shape, q.dtype),
                          vmap_method='sequential')(q, k, v, *biases, scale=np.float32(scale))


def _attend_fwd(q, k, v, scale, biases=None):
  if biases is not None:
    q, k, v = (x + b for x, b in zip((q, k, v), biases))
  y, weights = _forward(q, k, v, scale)
  return y, (q, k, v, y, weights, biases)


def _attend_bwd(scale, residuals, dy):
  q, k, v, y, weights, biases = residuals
  grads = jax.ffi.ffi_call(
      BACKWARD, tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (q, k, v)),
      vmap_method='sequential')(q, k, v, y, weights, dy, scale=np.float32(scale))
  return (*grads, None if biases is None else tuple(g.sum((0, 1)) for g in grads))


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
