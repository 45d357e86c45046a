"""TPU slices by the names TPU users write (`v3-8`, `v5litepod-16`), as the
devices of libtpu's topology descriptions, on any machine.

`jax.experimental.topologies.get_topology_desc` hands JAX the devices of a
slice that is not there; a jit lowered over a mesh of them compiles with
XLA's TPU compiler into the real executable, whose memory and cost analyses
and HLO the plan reads. Nothing runs: no TPU is needed, only the `libtpu`
package (`pip install "jax[tpu]"`, which picks the release matching jax).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import quiet


@dataclasses.dataclass(frozen=True)
class Generation:
  """A TPU generation's published per-chip figures (Google's system
  architecture pages; v2: Jouppi et al., CACM 2020) and how libtpu names it."""
  name: str             # as in slice names: v3-8
  aliases: tuple        # other spellings of the prefix
  topology: str         # libtpu's prefix: v3:2x2
  dims: int             # 2 (2-D torus) or 3
  cores_in_name: int    # the slice name counts TensorCores (2 a chip) or chips (1)
  chip_config: Optional[str]  # 'megacore': one JAX device a chip, of two cores
  devices_per_chip: int
  hbm_gib_per_chip: float
  bf16_tflops_per_chip: float
  hbm_gbps_per_chip: float

  @property
  def bf16_tflops_per_device(self) -> float:
    return self.bf16_tflops_per_chip / self.devices_per_chip


GENERATIONS = (
    Generation('v2', (), 'v2', 2, 2, None, 2, 16, 46, 700),
    Generation('v3', (), 'v3', 2, 2, None, 2, 32, 123, 900),
    Generation('v4', (), 'v4', 3, 2, 'megacore', 1, 32, 275, 1200),
    Generation('v5p', (), 'v5', 3, 2, 'megacore', 1, 95, 459, 2765),
    Generation('v5e', ('v5litepod',), 'v5e', 2, 1, None, 1, 16, 197, 819),
    Generation('v6e', ('v6litepod',), 'v6e', 2, 1, None, 1, 32, 918, 1640),
)
EXAMPLES = 'v3-8, v3-32, v4-8, v4-32, v5p-8, v5e-16 (or v5litepod-16), v6e-8'
INSTALL = 'pip install "jax[tpu]==%s" (libtpu, with XLA\'s TPU compiler)'


class TopologyError(ValueError):
  """A slice name, or a machine without libtpu: one line for the user."""


@dataclasses.dataclass(frozen=True)
class Slice:
  name: str
  generation: Generation
  chips: int
  shape: str            # chips per torus dimension: 4x4, 2x2x4

  @property
  def peak_flops_per_device(self) -> float:
    return self.generation.bf16_tflops_per_device * 1e12

  @property
  def hbm_bandwidth_per_device(self) -> float:
    return self.generation.hbm_gbps_per_chip * 1e9 / self.generation.devices_per_chip


def _torus(chips: int, dims: int) -> str:
  """The shape libtpu and GKE give a slice of `chips`: dimensions doubled in
  turn from 1x1 (2-D) or 2x2x1 (3-D), e.g. 16 -> 4x4, 2x2x4."""
  shape = [1, 1] if dims == 2 else [2, 2, 1]
  while np.prod(shape) < chips:
    smallest = min(shape)
    shape[max(i for i, v in enumerate(shape) if v == smallest)] *= 2
    shape.sort()
  return 'x'.join(map(str, shape))


def parse(name: str) -> Slice:
  """`v3-32` -> a v3 slice of 16 chips, 4x4; one clear line for anything else."""
  match = re.fullmatch(r'(v\d+[a-z]*(?:litepod)?)-(\d+)', name.strip().lower())
  gen = None
  if match:
    gen = next((g for g in GENERATIONS if match.group(1) in (g.name,) + g.aliases), None)
  if gen is None:
    raise TopologyError(f'unknown TPU topology {name!r}; use a slice name such as {EXAMPLES} '
                        f'(generations: {", ".join(g.name for g in GENERATIONS)})')
  count = int(match.group(2))
  chips = count // gen.cores_in_name
  min_chips = 4 if gen.dims == 3 else 1
  if count % gen.cores_in_name or chips < min_chips or chips & (chips - 1):
    raise TopologyError(f'unknown TPU topology {name!r}: a {gen.name} slice has a power of two '
                        f'of at least {min_chips * gen.cores_in_name} '
                        f'{"TensorCores" if gen.cores_in_name == 2 else "chips"}; '
                        f'e.g. {EXAMPLES}')
  return Slice(name, gen, chips, _torus(chips, gen.dims))


def devices(tpu: Slice) -> list:
  """The slice's JAX devices (not addressable: for compiling only)."""
  try:
    import libtpu  # noqa: F401
  except ImportError:
    raise TopologyError('compiling for a TPU needs libtpu: ' + INSTALL % jax.__version__) from None
  from jax.experimental import topologies
  from jax.experimental.compilation_cache import compilation_cache
  # compile-only: no chip is claimed, so other processes holding libtpu do not conflict
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  kwargs = {'chip_config_name': tpu.generation.chip_config} if tpu.generation.chip_config else {}
  try:
    with quiet.silenced(2):  # libtpu prints its search for a TPU's metadata as it starts
      desc = topologies.get_topology_desc(
          topology_name=f'{tpu.generation.topology}:{tpu.shape}', platform='tpu', **kwargs)
  except Exception as e:  # noqa: BLE001 -- libtpu's refusal, as one line
    raise TopologyError(f'libtpu has no topology {tpu.name!r} ({tpu.generation.topology}:'
                        f'{tpu.shape}): {str(e).splitlines()[0]}') from None
  # a compile-only client cannot load an executable back: keep this process's
  # compiles out of a persistent compilation cache (JAX_COMPILATION_CACHE_DIR)
  jax.config.update('jax_enable_compilation_cache', False)
  compilation_cache.reset_cache()
  return list(desc.devices)


def hbm_bytes_per_device(tpu_devices: list) -> int:
  """The HBM XLA's TPU compiler can use on one device, as it reports it: a
  program needing far more temporaries is refused with that figure."""
  from jax.sharding import NamedSharding, PartitionSpec
  mesh = jax.sharding.Mesh(np.asarray(tpu_devices[:1]), ('d',))
  huge = jax.ShapeDtypeStruct((2 ** 28, 1024), jnp.float32,
                              sharding=NamedSharding(mesh, PartitionSpec()))
  try:
    jax.jit(lambda a: jnp.cumsum(jnp.exp(a), axis=0) * a).lower(huge).compile()
  except Exception as e:  # noqa: BLE001 -- the refusal carries the figure
    found = re.search(r'available HBM \(([\d.]+)([KMGT])\)', str(e))
    if found:
      return int(float(found.group(1)) * 1024 ** 'KMGT'.index(found.group(2)) * 1024)
  raise TopologyError('libtpu did not report the HBM of a device; is it the release matching '
                      f'jax {jax.__version__}? ' + INSTALL % jax.__version__)
