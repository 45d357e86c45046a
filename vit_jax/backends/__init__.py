"""Platform-specific implementations of the model's layers, behind one seam.

The models (`vit_jax.models`) are plain Flax: what they say is what XLA
compiles on every platform, and what the parity tests check.
`for_devices(devices)` is the one place that swaps in something else, chosen
from the platform of the devices the computation runs on (never from the
process's default backend: a step compiled for TPU devices on a CPU host
stays pure XLA):
- one CPU device, float32: the kernels of `vit_jax.backends.cpu` for the
  attention, the dense layers' weight gradients, LayerNorm and the MLP's
  bias + GELU, each where it beats XLA:CPU on this machine's instruction
  set (`vit_jax.backends.cpu.choice`; `VIT_JAX_CPU_KERNELS=0|1` forces);
- GPUs, bfloat16/float16: cuDNN's fused attention (`vit_jax.backends.gpu`);
- anything else, TPUs and several CPU devices among them: the model as written.
It works by Flax method interception, so it is entered inside the traced
function, around the model's `apply`:

    with backends.for_devices(mesh.devices.flat):
      logits = model.apply({'params': params}, images)

`configure_process` holds the process settings that must precede JAX's
backends (`train.py`, `eval.py` and the benchmark call it first).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import flax.linen as nn
import jax

from vit_jax import accelerators


def platform_of(devices: Iterable[jax.Device]) -> str:
  """'cpu', 'gpu' or 'tpu': the one platform of `devices`."""
  platforms = {d.platform for d in devices}
  if len(platforms) != 1:
    raise ValueError(f'devices of one platform expected, got {sorted(platforms)}')
  return platforms.pop()


@contextlib.contextmanager
def for_devices(devices: Iterable[jax.Device], kernels: bool = True) -> Iterator[None]:
  """Within it, the model's layers take the implementations the platform of
  `devices` runs best; `kernels=False` keeps the model as written."""
  devices = list(devices)
  platform = platform_of(devices)
  interceptor = None
  if kernels and platform == 'cpu' and len(devices) == 1:
    from vit_jax.backends import cpu
    interceptor = cpu.interceptor()
  elif kernels and platform == 'gpu':
    from vit_jax.backends import gpu
    interceptor = gpu.interceptor
  if interceptor is None:
    yield
    return
  with nn.intercept_methods(interceptor):
    yield


def describe(devices: Iterable[jax.Device], dtype: str = 'float32') -> list[str]:
  """What `for_devices(devices)` runs the layers of a `dtype` model with, and
  why: one line each (the benchmark prints them)."""
  devices = list(devices)
  platform = platform_of(devices)
  if platform == 'cpu' and len(devices) > 1:
    return [f'every layer: XLA ({len(devices)} CPU devices; the CPU kernels take one)']
  if platform == 'cpu' and dtype != 'float32':
    return [f'every layer: XLA (the CPU kernels take float32, not {dtype})']
  if platform == 'cpu':
    from vit_jax.backends.cpu import choice
    return [f'{choice.LAYERS[k]}: {"kernel" if c.kernel else "XLA"} ({c.reason})'
            for k, c in choice.choices().items()]
  if platform == 'gpu' and dtype in ('bfloat16', 'float16'):
    return ["attention: cuDNN's fused attention where cuDNN takes the shape",
            'other layers: XLA']
  return [f'every layer: XLA (the model as written on {platform})']


def cpu_only_host() -> bool:
  """Whether this machine has no TPU and no GPU: no device file of one
  (`vit_jax.accelerators`), and none that JAX detects."""
  if accelerators.present():
    return False
  try:
    from jax._src import hardware_utils
  except ImportError:
    return False
  return (hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0
          and not hardware_utils.has_visible_nvidia_gpu()
          and hardware_utils.num_available_amd_gpus(stop_at=1) == 0)


def configure_process(training: bool = False) -> None:
  """Process settings, before JAX's backends start: where JAX computes on the
  CPU, the memory glibc frees is kept for reuse, and for training XLA:CPU's
  concurrency-optimised scheduler is off (`vit_jax.backends.cpu.host_memory`,
  `.xla_flags`). That a machine without TPU or GPU uses the CPU, `import
  vit_jax` has told JAX already (`vit_jax.accelerators`)."""
  from vit_jax.backends.cpu import host_memory, xla_flags
  if training:
    xla_flags.set_training_flags()
  host_memory.keep_freed_memory()
