"""One loader and one writer for every checkpoint format.

Formats: timm `.pth`/`.pt`/`.bin` and `.safetensors`, Google `.npz` (the
official releases' layout, and big_vision's, whose arrays say the model), a
Hugging Face transformers ViT directory, our orbax directory, and a training
workdir (its latest complete checkpoint).
Loading checks the file against the model key by key and shape by shape, then
adapts the head and the position embeddings to the requested config.
"""
from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import safetensors.numpy
from flax import traverse_util

from vit_jax import storage
from vit_jax.models import registry
from vit_jax.checkpoints import (adapt, big_vision_layout, google_layout, hf_format, hf_layout,
                                 orbax_io, safetensors_io, scan_layout, timm_layout)
from vit_jax.checkpoints.errors import CheckpointError
from vit_jax.checkpoints.torch_format import read_pth, write_pth

TORCH_SUFFIXES = ('.pth', '.pt', '.bin')
SAFETENSORS_META_KEY = 'vit_jax'
_HEAD = ('head/kernel', 'head/bias')


def detect_format(path: str) -> str:
  """'torch', 'safetensors', 'npz', 'hf' (a directory whose config.json has a
  model_type) or
  'orbax' (another directory, a path ending in .orbax or with no suffix)."""
  suffix = os.path.splitext(path.rstrip('/'))[1].lower()
  is_dir = storage.resolve(path).is_dir()
  if is_dir and hf_format.is_hf_dir(path):
    return 'hf'
  if is_dir or suffix in ('', '.orbax'):
    return 'orbax'
  if suffix in TORCH_SUFFIXES:
    return 'torch'
  if suffix in ('.safetensors', '.npz'):
    return suffix[1:]
  raise CheckpointError(f'{path}: unknown checkpoint format {suffix!r}; use .pth/.pt/.bin, '
                        '.safetensors, .npz, a Hugging Face directory (with config.json) or '
                        'an orbax directory (a directory, or a path ending in .orbax or with '
                        'no suffix)')


def expected_shapes(cfg: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Flat parameter shapes of a config's model in the release layout (blocks
  unstacked, whatever `scan_layers` says), without allocating them."""
  model = registry.module_from_config(ml_collections.ConfigDict(
      {**cfg.to_dict(), 'scan_layers': False}, type_safe=False))
  x = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  tree = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)['params']
  return {k: v.shape for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def _model_from_filename(path: str) -> Optional[str]:
  base = os.path.basename(path)
  hits = [n for n in registry.list_models()
          if registry.get_model_config(n).weights_file == base]
  return hits[0] if len(hits) == 1 else None


def _read_file(path: str, fmt: str) -> tuple[dict[str, np.ndarray], Optional[dict]]:
  """(raw arrays, vit_jax model record if the file carries one)."""
  if not storage.resolve(path).exists():
    raise CheckpointError(f'{path}: no such file or directory')
  if fmt == 'orbax':
    record, params = orbax_io.read(path)  # a scan_layers training run stores stacked blocks
    return traverse_util.flatten_dict(scan_layout.unstack_blocks(params), sep='/'), record
  if fmt == 'torch':
    return read_pth(path), None
  if fmt == 'hf':
    return hf_format.read_weights(path), None
  if fmt == 'npz':
    try:
      with storage.resolve(path).open('rb') as f, np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}, None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
      raise CheckpointError(f'{path}: truncated or not an .npz checkpoint ({e})') from None
  arrays, meta = safetensors_io.read(path)
  record = json.loads(meta[SAFETENSORS_META_KEY]) if SAFETENSORS_META_KEY in meta else None
  return arrays, record


def _to_flat(raw: dict[str, np.ndarray], fmt: str, cfg: ml_collections.ConfigDict,
             path: str) -> dict[str, np.ndarray]:
  """Our flat tree from the raw arrays; names any key the model lacks."""
  if fmt in ('torch', 'safetensors', 'hf'):
    table = (hf_layout.rules(cfg, hf_format.prefix_of(raw)) if fmt == 'hf'
             else timm_layout.rules(cfg))
    expected = timm_layout.expected_timm_keys(table)
    _check_keys(set(raw), expected, path, cfg)
    try:
      return timm_layout.to_ours(raw, table)
    except ValueError as e:
      raise CheckpointError(f'{path}: does not fit {cfg.name}: {e}') from None
  return google_layout.to_ours(raw) if fmt == 'npz' else raw


def _natural(key: str) -> list:
  """Sort key putting blocks.2 before blocks.10."""
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', key)]


def _check_keys(have: set[str], want: set[str], path: str, cfg) -> None:
  missing = sorted(want - have, key=_natural)
  unexpected = sorted(have - want, key=_natural)
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f'missing keys {_names(missing)}')
    if unexpected:
      parts.append(f'unexpected keys {_names(unexpected)}')
    raise CheckpointError(f'{path}: does not match model {cfg.name}: ' + '; '.join(parts) +
                          '; check --model and the config overrides')


def _names(keys: list[str], limit: int = 6) -> str:
  more = f' (+{len(keys) - limit} more)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def _file_config(raw_flat: dict[str, np.ndarray], target: ml_collections.ConfigDict
                 ) -> ml_collections.ConfigDict:
  """The target config with the head size and resolution the file has."""
  src = ml_collections.ConfigDict(target.to_dict(), type_safe=False)
  src.num_classes = int(raw_flat['head/bias'].shape[0]) if 'head/bias' in raw_flat else 0
  pos = raw_flat.get(adapt.POSEMB)
  if pos is not None and pos.ndim == 3:
    tokens = pos.shape[1] - adapt.num_prefix(target)
    grid = int(round(np.sqrt(tokens)))
    if grid != adapt.grid_size(target):
      src.image_size = grid * adapt.total_stride(target)
  return src


def _check_shapes(flat: dict[str, np.ndarray], cfg: ml_collections.ConfigDict,
                  path: str) -> None:
  want = expected_shapes(cfg)
  _check_keys(set(flat), set(want), path, cfg)
  for k, shape in want.items():
    if tuple(flat[k].shape) != tuple(shape):
      raise CheckpointError(
          f'{path}: shape mismatch for {k}: the file has {tuple(flat[k].shape)}, model '
          f'{cfg.name} expects {tuple(shape)}; check --model and the config overrides')


def _probe_flat(raw: dict[str, np.ndarray], fmt: str) -> dict[str, np.ndarray]:
  """Head and position embedding in our names, before the full conversion."""
  if fmt in ('torch', 'safetensors', 'hf'):
    pos, head = ((f'{hf_format.prefix_of(raw)}embeddings.position_embeddings', 'classifier.bias')
                 if fmt == 'hf' else ('pos_embed', 'head.bias'))
    probe = {adapt.POSEMB: raw[pos]} if pos in raw else {}
    if head in raw:
      probe['head/bias'] = raw[head]
    return probe
  return google_layout.to_ours(raw) if fmt == 'npz' else raw


def load_params(path: str, model_name: Optional[str] = None, *, log=logging.warning,
                **overrides: Any) -> tuple[ml_collections.ConfigDict, Any]:
  """(config, params) from any supported checkpoint, fitted to the model.

  `model_name` is needed where the file does not say the architecture (timm
  and Google files, unless the file name is a registered weights file; an HF
  directory's config.json says it); `overrides` replace config fields. A
  `num_classes` unlike the file's re-initialises the head (zeros); an
  `image_size` unlike it resamples the position embeddings.
  """
  fmt = detect_format(path)
  raw, record = _read_file(path, fmt)
  if fmt == 'npz' and big_vision_layout.is_big_vision(raw):
    fmt, raw = 'big_vision', big_vision_layout.to_ours(raw)  # now in our names
  if fmt == 'hf':
    target = hf_format.target_config(path, raw, model_name, overrides, log)
  elif fmt == 'big_vision':
    target = big_vision_layout.target_config(path, raw, model_name or _model_from_filename(path),
                                             overrides)
  elif record is not None and model_name is None:
    stored = orbax_io.config_from_record(record, path)
    fields = {k: v for k, v in stored.to_dict().items() if k != 'name'}
    fields.update(overrides)
    target = registry.get_model_config(stored.name, **fields)
  else:
    name = model_name or _model_from_filename(path)
    if name is None:
      raise CheckpointError(f'{path}: the file does not name its architecture; pass the model '
                            'name (--model NAME; `python -m convert --list-models` lists them)')
    target = registry.get_model_config(name, **overrides)
  src = _file_config(_probe_flat(raw, fmt), target)
  flat = _to_flat(raw, fmt, src, path)
  _check_shapes(flat, src, path)
  flat = adapt.adapt({k: np.asarray(v, np.float32) for k, v in flat.items()}, src, target,
                     log=log)
  params = traverse_util.unflatten_dict(flat, sep='/')
  return target, scan_layout.stack_blocks(params) if target.scan_layers else params


def save_params(path: str, params: Any, config: ml_collections.ConfigDict,
                fmt: Optional[str] = None) -> None:
  """Write params in `fmt` (by default the format the path names; 'hf' and
  'big_vision', an `.npz` in big_vision's layout, must be asked for), always
  with the blocks unstacked (`scan_layers` ones are split); nothing is left
  on failure."""
  fmt = fmt or detect_format(path)
  params = scan_layout.unstack_blocks(jax.device_get(params))
  flat = {k: np.asarray(v, np.float32) for k, v in
          traverse_util.flatten_dict(params, sep='/').items()}
  if fmt == 'orbax':
    orbax_io.write(path, traverse_util.unflatten_dict(flat, sep='/'), config)
    return
  if fmt == 'hf':
    hf_format.write(path, flat, config)
    return
  if fmt in ('torch', 'safetensors'):
    arrays = timm_layout.to_timm(flat, timm_layout.rules(config))
  elif fmt == 'big_vision':
    arrays = big_vision_layout.to_big_vision(flat, config)
  else:
    arrays = google_layout.to_npz(flat)

  def write(f) -> None:
    if fmt == 'torch':
      write_pth(f, arrays)
    elif fmt == 'safetensors':
      meta = {SAFETENSORS_META_KEY: json.dumps(orbax_io.model_record(config))}
      f.write(safetensors.numpy.save(arrays, metadata=meta))
    else:
      np.savez(f, **arrays)
  storage.write_file(path, write)
