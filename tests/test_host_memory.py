"""keep_freed_memory: a jitted step with a large temporary stops faulting in
fresh pages once the first step has run."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from vit_jax import host_memory

# A step whose temporary (8192 x 4096 float32, 128 MiB) is too large for a
# worker thread's glibc arena: without the setting it is mmap-ed and unmapped
# every step. The child prints the minor page faults of three warm steps.
STEP_FAULTS = """
import json, resource, sys
from vit_jax import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == 'keep' else None
import jax, jax.numpy as jnp
x = jnp.ones((8192, 64)); w1 = jnp.ones((64, 4096)); w2 = jnp.ones((4096, 16))
step = jax.jit(lambda x, w1, w2: jnp.tanh(x @ w1) @ w2)
for _ in range(3):
  step(x, w1, w2).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  step(x, w1, w2).block_until_ready()
print(json.dumps([kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3]))
"""
TEMP_PAGES = 8192 * 4096 * 4 // 4096


def faults_per_step(mode: str) -> tuple:
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'GLIBC_TUNABLES')}
  out = subprocess.run([sys.executable, '-c', STEP_FAULTS, mode], capture_output=True, text=True,
                       env=env, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  return tuple(json.loads(out.stdout.splitlines()[-1]))


def glibc() -> bool:
  return sys.platform.startswith('linux') and os.confstr('CS_GNU_LIBC_VERSION') is not None


@pytest.mark.skipif(not glibc(), reason='the setting is for glibc malloc')
def test_a_kept_temporary_is_not_faulted_in_again():
  kept, faults = faults_per_step('keep')
  assert kept is True
  assert faults < 0.01 * TEMP_PAGES, faults


def huge_pages_always() -> bool:
  thp = pathlib.Path('/sys/kernel/mm/transparent_hugepage/enabled')
  return thp.exists() and '[always]' in thp.read_text()


@pytest.mark.skipif(not glibc() or huge_pages_always(),
                    reason='glibc with 4 KiB pages: what the setting is for')
def test_without_it_every_step_faults_in_the_temporary():
  kept, faults = faults_per_step('default')
  assert kept is None
  assert faults > 0.5 * TEMP_PAGES, faults


def test_other_platforms_are_left_alone(monkeypatch):
  monkeypatch.setattr(sys, 'platform', 'darwin')
  assert host_memory.keep_freed_memory() is False
