"""keep_freed_memory: a jitted step with a large temporary stops faulting in
fresh pages once the first step has run."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from vit_jax.backends.cpu import host_memory

# A step whose temporary (8192 x 4096 float32, 128 MiB) is too large for a
# worker thread's glibc arena: without the setting it is mmap-ed and unmapped
# every step. The child prints the fewest minor page faults of a warm step
# (the kept heap still grows now and then, when its free blocks are split).
STEP_FAULTS = """
import json, resource, sys
from vit_jax.backends.cpu import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == 'keep' else None
import jax, jax.numpy as jnp
x = jnp.ones((8192, 64)); w1 = jnp.ones((64, 4096)); w2 = jnp.ones((4096, 16))
step = jax.jit(lambda x, w1, w2: jnp.tanh(x @ w1) @ w2)
faults = []
for _ in range(8):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  step(x, w1, w2).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps([kept, min(faults[2:])]))
"""
TEMP_PAGES = 8192 * 4096 * 4 // 4096


def fewest_faults_of_a_step(mode: str) -> tuple:
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'GLIBC_TUNABLES')}
  env['JAX_PLATFORMS'] = 'cpu'
  out = subprocess.run([sys.executable, '-c', STEP_FAULTS, mode], capture_output=True, text=True,
                       env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return tuple(json.loads(out.stdout.splitlines()[-1]))


def glibc() -> bool:
  return sys.platform.startswith('linux') and os.confstr('CS_GNU_LIBC_VERSION') is not None


@pytest.mark.skipif(not glibc(), reason='the setting is for glibc malloc')
def test_a_kept_temporary_is_not_faulted_in_again():
  kept, faults = fewest_faults_of_a_step('keep')
  assert kept is True
  assert faults < 0.01 * TEMP_PAGES, faults


def huge_pages_always() -> bool:
  thp = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')
  return thp.exists() and '[always]' in thp.read_text()


@pytest.mark.skipif(not glibc() or huge_pages_always(),
                    reason='glibc with 4 KiB pages: what the setting is for')
def test_without_it_every_step_faults_in_the_temporary():
  kept, faults = fewest_faults_of_a_step('default')
  assert kept is None
  assert faults > 0.5 * TEMP_PAGES, faults


def test_other_platforms_are_left_alone(monkeypatch):
  monkeypatch.setattr(sys, 'platform', 'darwin')
  assert host_memory.keep_freed_memory() is False


@pytest.mark.parametrize('platforms, cpu', [('cpu', True), ('cuda', False), ('tpu,cpu', False),
                                            ('cpu,cuda', True)])
def test_jax_platforms_decides_where_jax_computes(monkeypatch, platforms, cpu):
  monkeypatch.setenv('JAX_PLATFORMS', platforms)
  assert host_memory.computes_on_cpu() is cpu
  if not cpu:
    assert host_memory.keep_freed_memory() is False


def test_without_jax_platforms_the_hardware_decides(monkeypatch):
  """An installed libtpu (needed to compile for TPUs) leaves a CPU-only
  machine a CPU host; a TPU chip or a GPU makes it an accelerator host."""
  from jax._src import hardware_utils
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  previous = jax.config.jax_platforms
  jax.config.update('jax_platforms', None)
  try:
    assert host_memory.computes_on_cpu() is True  # this machine: no TPU, no GPU
    monkeypatch.setattr(hardware_utils, 'num_available_tpu_chips_and_device_id', lambda: (4, 0))
    assert host_memory.computes_on_cpu() is False
  finally:
    jax.config.update('jax_platforms', previous)
