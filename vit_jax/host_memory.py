"""Keep freed host memory in the process, so a CPU training step reuses it.

XLA:CPU packs a step's temporaries into one buffer (826 MB for the card's
S/16 training step at batch 8) and frees it when the step ends. glibc hands a
block that large straight back to the kernel (worker threads allocate from
arenas capped at 64 MB, which fall back to mmap), so the next step faults in
and zeroes 200,000 fresh pages: 0.4 s of system time a step, 5-8% of its wall
time on 2 cores (BENCHMARKS.md). With one arena, no mmap and no trimming, the
freed buffer stays in the heap and the next step reuses it. The cost is that
the process keeps its high-water mark of memory, as a trainer does anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = 2 ** 31 - 1  # the largest value mallopt's int takes


def keep_freed_memory() -> bool:
  """Tell glibc's malloc to keep what it frees for reuse; False where the C
  library is not glibc (macOS, musl), which is left as it is. Call before the
  JAX backend starts: threads that already hold an arena keep it."""
  if not sys.platform.startswith('linux'):
    return False
  libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
  if not hasattr(libc, 'gnu_get_libc_version'):
    return False
  return all(libc.mallopt(param, value) == 1 for param, value in (
      (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
