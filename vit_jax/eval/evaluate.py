"""Top-1 / top-5 / loss over a whole dataset, exactly, on any mesh.

Counts are summed inside the jitted step over the global (all hosts) batch,
with padding and unreadable images masked out, so the totals are the same
for any batch size, device count or host count.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from vit_jax import backends, parallel
from vit_jax.data.eval_pipeline import eval_batches, num_batches
from vit_jax.data.sources import DatasetError, open_source
from vit_jax.progress import Progress


class UnreadableImageError(DatasetError):
  """An image that cannot be decoded, in strict mode."""


def _sums(logits: jax.Array, labels: jax.Array, valid: jax.Array,
          real: Optional[jax.Array] = None) -> dict:
  """Masked sums of examples, loss and top-1 / top-5 hits.

  With `real` (multi-hot ImageNet ReaL labels) a prediction is a hit when it
  is among the real labels, and images with none are left out, as in the
  ReaL protocol; the loss uses the original label.
  """
  k = min(5, logits.shape[-1])
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  topk = jax.lax.top_k(logits, k)[1]
  if real is None:
    hits = topk == labels[:, None]
  else:
    hits = jnp.take_along_axis(real, topk, axis=-1)
    valid = valid & real.any(axis=-1)
  w = valid.astype(jnp.float32)
  return {'count': w.sum(), 'loss': (nll * w).sum(), 'top1': (hits[:, 0] * w).sum(),
          'top5': (hits.any(axis=-1) * w).sum()}


def make_eval_step(model: nn.Module, mean: Sequence[float], std: Sequence[float],
                   devices: Sequence[jax.Device]):
  """Jitted (params, totals, batch) -> (totals, logits) for `devices` (their
  platform picks the layers' implementations); normalises on device so the
  host sends uint8."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  devices = list(devices)

  @jax.jit
  def step(params, totals, image, label, valid, skipped, real=None):
    x = (image.astype(jnp.float32) / 255.0 - mean) / std
    with backends.for_devices(devices):
      logits = model.apply({'params': params}, x, train=False)
    sums = _sums(logits, label, valid, real)
    sums['skipped'] = skipped.astype(jnp.float32).sum()
    return jax.tree.map(jnp.add, totals, sums), logits
  return step


def _to_host(x: jax.Array) -> np.ndarray:
  """The full value of a global array on every process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _all_hosts(local: list[int]) -> list[int]:
  """The sorted union of every process's dataset indices (e.g. of unreadable
  images, which only the process that read them knows)."""
  if jax.process_count() == 1:
    return sorted(local)
  counts = np.asarray(multihost_utils.process_allgather(np.int32(len(local))))
  if counts.max() == 0:
    return []
  padded = np.full(int(counts.max()), -1, np.int32)
  padded[:len(local)] = local
  every = np.asarray(multihost_utils.process_allgather(padded))
  return sorted(int(i) for i in every.ravel() if i >= 0)


def _strict_failure(source, local: dict[int, str]) -> UnreadableImageError:
  """The first unreadable image of any host, named the same on every host."""
  first = _all_hosts(list(local))[0]
  reason = local.get(first, 'read by another host, see its log')
  return UnreadableImageError(f'cannot decode image {source.id_of(first)}: {reason} '
                              '(strict mode)')


def evaluate(model: nn.Module, params: Any, source_or_spec: Any, *,
             model_config: ml_collections.ConfigDict, batch_size: int,
             mesh: Optional[Mesh] = None, data_dir: Optional[str] = None,
             class_names: Optional[Sequence[str]] = None, workers: int = 8,
             strict: bool = False, write_logits: bool = False, progress: bool = True,
             log=logging.warning, step=None) -> dict:
  """Evaluate `params` on a dataset (spec string or source); `batch_size` is
  global. Returns top1, top5 (fractions), loss, num_examples, num_skipped,
  skipped (ids of unreadable images), and logits/labels/ids when asked.
  `step`: a `make_eval_step` of this model and mesh to reuse (a training run
  evaluating several datasets, again and again, compiles it once)."""
  source = (open_source(source_or_spec, data_dir, class_names)
            if isinstance(source_or_spec, str) else source_or_spec)
  mesh = mesh or parallel.make_mesh()
  local_batch = parallel.check_batch_size(batch_size)
  if not all(isinstance(x, jax.Array) for x in jax.tree.leaves(params)):
    params = jax.device_put(params, parallel.replicated(mesh))
  step = step or make_eval_step(model, model_config.mean, model_config.std, mesh.devices.flat)
  totals = {k: jnp.zeros((), jnp.float32) for k in ('count', 'loss', 'top1', 'top5', 'skipped')}
  steps = num_batches(len(source), local_batch, jax.process_count())
  bar = Progress(steps, 'eval', enabled=progress)
  log_every = max(1, steps // 10)  # where stdout is a file: ten lines
  kept_logits, kept_index, kept_labels, kept_valid = [], [], [], []
  unreadable: dict[int, str] = {}  # this host's: dataset index -> why
  for batch in eval_batches(source, local_batch=local_batch,
                            image_size=model_config.image_size,
                            crop_pct=model_config.crop_pct,
                            interpolation=model_config.interpolation,
                            crop_mode=model_config.crop_mode,
                            process_index=jax.process_index(),
                            process_count=jax.process_count(), workers=workers):
    for index, (ident, err) in zip(batch['index'][batch['skipped']], batch['errors']):
      unreadable[int(index)] = err
      if not strict:
        log(f'skipping unreadable image {ident}: {err}')
    arrays = parallel.global_batch(mesh, {k: batch[k] for k in
                                          ('image', 'label', 'valid', 'skipped', 'index', 'real')
                                          if k in batch})
    totals, logits = step(params, totals, arrays['image'], arrays['label'], arrays['valid'],
                          arrays['skipped'], arrays.get('real'))
    # strict: stop on every host together, at the first step any host skipped
    if strict and float(totals['skipped'].addressable_data(0)) > 0:
      raise _strict_failure(source, unreadable)
    if write_logits:
      kept_logits.append(_to_host(logits))
      kept_index.append(_to_host(arrays['index']))
      kept_labels.append(_to_host(arrays['label']))
      kept_valid.append(_to_host(arrays['valid']))
    bar.update(int(batch['valid'].sum()) * jax.process_count())
    if bar.enabled and (bar.steps % log_every == 0 or bar.steps == steps):
      seen = {k: float(v.addressable_data(0)) for k, v in totals.items()}
      bar.log(bar.steps, top1=seen['top1'] / max(seen['count'], 1.0))
  bar.close()
  t = {k: float(v) for k, v in jax.device_get(
      jax.tree.map(lambda a: a.addressable_data(0), totals)).items()}
  n = int(round(t['count']))
  out = {'top1': t['top1'] / max(n, 1), 'top5': t['top5'] / max(n, 1),
         'loss': t['loss'] / max(n, 1), 'num_examples': n,
         'num_skipped': int(round(t['skipped'])),
         'skipped': [source.id_of(i) for i in _all_hosts(list(unreadable))]}
  if write_logits:
    index = np.concatenate(kept_index)
    keep = np.concatenate(kept_valid)  # evaluated rows: no padding, no skipped image
    order = np.argsort(index[keep], kind='stable')
    out['logits'] = np.concatenate(kept_logits)[keep][order]
    out['labels'] = np.concatenate(kept_labels)[keep][order].astype(np.int64)
    out['ids'] = np.array([source.id_of(int(i)) for i in index[keep][order]])
  return out
