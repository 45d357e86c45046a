"""Whether this host has an accelerator, read from its device files alone.

Nothing is started to find out: libtpu, once started on a machine without a
TPU, prints its failed search for one (`Failed to find host bounds`, ...)
on every run. A TPU VM has /dev/accel* (v2-v4, v5p) or /dev/vfio/N (v5e,
v6e); GPUs have their drivers' device nodes.
"""
from __future__ import annotations

import glob
import os
import sys

DEVICE_FILES = ('/dev/accel*', '/dev/vfio/[0-9]*', '/dev/nvidia[0-9]*', '/dev/nvidiactl',
                '/dev/dxg', '/dev/kfd')


def present() -> bool:
  """Whether a TPU or GPU device file exists on this host."""
  return any(glob.glob(pattern) for pattern in DEVICE_FILES)


def use_cpu_without_one() -> None:
  """Without an accelerator, JAX is told to use the CPU, so that an installed
  libtpu (which compiling for TPU slices needs) is not started; a platform
  chosen already (JAX_PLATFORMS, `jax_platforms`) is kept."""
  if os.environ.get('JAX_PLATFORMS') or present():
    return
  jax = sys.modules.get('jax')
  if jax is not None and jax.config.jax_platforms:
    return
  os.environ['JAX_PLATFORMS'] = 'cpu'
  if jax is not None:
    jax.config.update('jax_platforms', 'cpu')
