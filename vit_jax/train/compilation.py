"""Compiling the training step before the loop, through JAX's persistent
compilation cache in the workdir (`DIR/xla_cache`, a bucket too): a
restarted run loads the step's executable instead of compiling it again, and
its start-up line says so."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Optional

import jax
from jax.experimental.compilation_cache import compilation_cache

from vit_jax import storage
from vit_jax.workdir import Workdir

_HIT = '/jax/compilation_cache/cache_hits'
_SAVED = '/jax/compilation_cache/compile_time_saved_sec'


def use_cache(enabled: bool, workdir: Workdir) -> Optional[str]:
  """Turn on the persistent cache in the workdir, before anything compiles;
  returns the cache directory in use (None: off). A cache named by
  JAX_COMPILATION_CACHE_DIR is kept (shared by several runs), and
  `enabled=False` (`--config.compilation_cache=False`) leaves JAX's
  settings alone. Every compile is cached, however short (JAX's default
  skips those under a second), unless JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS
  says otherwise."""
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  if not enabled:
    return None
  path = str(workdir.xla_cache)
  compilation_cache.reset_cache()  # JAX settles on a cache at its first compile
  compilation_cache.set_cache_dir(path)
  if storage.is_remote(path):
    # no eviction (its lock is a local file) and none of XLA's own GPU caches
    # beside it (local paths only): a bucket keeps the executables alone
    jax.config.update('jax_compilation_cache_max_size', -1)
    jax.config.update('jax_persistent_cache_enable_xla_caches', '')
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  return path


@dataclasses.dataclass
class CompiledStep:
  step: Callable                   # the executable: (state, images, labels) -> (state, metrics)
  seconds: float                   # what compiling (or loading) took here
  compile_s: float                 # what compiling took: first compile, if loaded from the cache
  from_cache: bool

  def line(self, cache: Optional[str]) -> str:
    """What the start-up says about it."""
    if self.from_cache:
      return (f'training step loaded from the compilation cache {cache} in {self.seconds:.1f} s '
              f'(compiling took {self.compile_s:.1f} s): the restart skipped the compile')
    where = f'cached in {cache}' if cache else 'no persistent compilation cache'
    return f'training step compiled in {self.seconds:.1f} s ({where})'


def compile_step(jitted: Any, *abstract_args: Any) -> CompiledStep:
  """`jitted` lowered for `abstract_args` (shapes and shardings) and compiled."""
  events = {'hits': 0, 'saved': 0.0}

  def on_event(event: str, **_):
    if event == _HIT:
      events['hits'] += 1

  def on_duration(event: str, duration: float, **_):
    if event == _SAVED:
      events['saved'] += duration
  jax.monitoring.register_event_listener(on_event)
  jax.monitoring.register_event_duration_secs_listener(on_duration)
  start = time.perf_counter()
  try:
    compiled = jitted.lower(*abstract_args).compile()
  finally:
    jax.monitoring.unregister_event_listener(on_event)
    jax.monitoring.unregister_event_duration_listener(on_duration)
  seconds = time.perf_counter() - start
  hit = events['hits'] > 0
  return CompiledStep(compiled, seconds, seconds + events['saved'] if hit else seconds, hit)
