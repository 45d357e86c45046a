"""Which kernels replace the model's layers on this CPU, and why.

Each of the four replacements is used where it was measured to beat
XLA:CPU (BENCHMARKS.md) for the instruction set the kernel library is built
for (`kernels.instruction_set()`: `-march=native` on this CPU), never by the
machine's name; an instruction set nobody measured keeps the model as
written. `VIT_JAX_CPU_KERNELS=1` takes every kernel the library has,
`VIT_JAX_CPU_KERNELS=0` none.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Collection, Iterator, Optional

from vit_jax.backends.cpu import kernels

ENV = 'VIT_JAX_CPU_KERNELS'
# key: what a user reads
LAYERS = {'attention': 'attention', 'dense': 'dense weight gradient',
          'layer_norm': 'LayerNorm', 'bias_gelu': 'MLP bias + GELU'}
# The replacements faster than XLA:CPU, for the inference and the training
# step alike, by what the library is built for (measured: BENCHMARKS.md).
FASTER = {
    'avx512': frozenset(LAYERS),
    'avx2': frozenset({'attention', 'layer_norm'}),
}
_ISA_NAMES = {'avx512': 'AVX-512', 'avx2': 'AVX2 without AVX-512'}


@dataclasses.dataclass(frozen=True)
class Choice:
  layer: str    # a key of LAYERS
  kernel: bool  # the kernel, else XLA's code (the model as written)
  reason: str


_override: Optional[frozenset] = None


@contextlib.contextmanager
def override(layers: Collection[str]) -> Iterator[None]:
  """Within it, exactly `layers` (LAYERS keys) take their kernels, whatever
  the machine and VIT_JAX_CPU_KERNELS: steps traced inside it compare one
  choice with another (`python -m vit_jax.bench --compare kernels`)."""
  global _override
  unknown = set(layers) - set(LAYERS)
  if unknown:
    raise ValueError(f'unknown layers {sorted(unknown)}; known: {sorted(LAYERS)}')
  before, _override = _override, frozenset(layers)
  try:
    yield
  finally:
    _override = before


def forced() -> Optional[bool]:
  """VIT_JAX_CPU_KERNELS as a bool; None where it is unset or empty."""
  value = os.environ.get(ENV, '').strip()
  if value in ('', '0', '1'):
    return None if not value else value == '1'
  raise ValueError(f'{ENV}={value!r}: set it to 1 (every CPU kernel), 0 (none), or unset it '
                   '(each where it beats XLA:CPU on this machine)')


def choices() -> dict[str, Choice]:
  """Each replacement's choice on this machine, by LAYERS key."""
  if _override is not None:
    return {k: Choice(k, k in _override, 'chosen by the caller') for k in LAYERS}
  force = forced()
  if force is False:
    return {k: Choice(k, False, f'{ENV}=0') for k in LAYERS}
  isa = kernels.instruction_set()
  if isa is None:
    return {k: Choice(k, False, 'the kernels could not be built (see the warning)')
            for k in LAYERS}
  name = _ISA_NAMES.get(isa, isa)
  if force:
    return {k: Choice(k, True, f'{ENV}=1 (built for {name})') for k in LAYERS}
  if isa not in FASTER:
    return {k: Choice(k, False, f'not measured on a {name} build') for k in LAYERS}
  return {k: Choice(k, True, f'faster than XLA:CPU on {name}') if k in FASTER[isa]
          else Choice(k, False, f'XLA:CPU is as fast or faster on {name}') for k in LAYERS}
