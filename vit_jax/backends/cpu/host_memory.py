"""Keep freed host memory in the process, so a CPU step reuses it.

XLA:CPU packs a step's temporaries into one buffer (826 MB for the card's
S/16 training step at batch 8) and frees it when the step ends. glibc hands a
block that large straight back to the kernel (worker threads allocate from
arenas capped at 64 MB, which fall back to mmap), so the next step faults in
and zeroes 210,000 fresh pages: 0.4 s of system time a step, 5-8% of its wall
time on 2 cores (BENCHMARKS.md); ViT-B/16 inference at batch 32 faults in
1 GB a batch. With one arena, no mmap and no trimming, the freed buffer stays
in the heap and the next step reuses it. The cost is that the process keeps
its high-water mark of memory (the quickstart's peak RSS goes from 794 to
1,096 MB). `train.py`, `eval.py` and the benchmark set it, and only where JAX
computes on the CPU: on GPU and TPU hosts the step's buffers live on the
device, and one arena would only serialise the input pipeline's threads.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import jax

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = 2 ** 31 - 1  # the largest value mallopt's int takes


def computes_on_cpu() -> bool:
  """Whether JAX will run on the CPU, decided before its backends start (the
  setting must precede their threads): the platforms JAX is told to use
  (JAX_PLATFORMS or `jax_platforms`) when set, else whether the machine has
  neither TPU nor GPU, as JAX detects them (an installed libtpu alone, which
  compiling for TPUs needs, does not make an accelerator host)."""
  platforms = (os.environ.get('JAX_PLATFORMS') or jax.config.jax_platforms or '').strip()
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  from vit_jax.backends import cpu_only_host
  return cpu_only_host()


def keep_freed_memory() -> bool:
  """Tell glibc's malloc to keep what it frees for reuse, where JAX computes
  on the CPU; False where it does not, or where the C library is not glibc
  (macOS, musl): then nothing changes. Call before the JAX backend starts:
  threads that already hold an arena keep it."""
  if not sys.platform.startswith('linux') or not computes_on_cpu():
    return False
  libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
  if not hasattr(libc, 'gnu_get_libc_version'):
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in (
      (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
