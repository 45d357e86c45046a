"""What a run says before its first step, on process 0: the resolved config,
versions, devices, mesh, batch and model; and the config a training workdir
keeps (`config.json`, as big_vision does)."""
from __future__ import annotations

import importlib.metadata
import json
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from vit_jax.workdir import Workdir

PACKAGES = ('jax', 'flax', 'optax', 'orbax-checkpoint')


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def parameter_count(params: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def config_lines(config: ml_collections.ConfigDict) -> list[str]:
  """One `key: value` line per config key, sorted."""
  return [f'  {k}: {v}' for k, v in sorted(config.to_dict().items())]


def startup_lines(kind: str, config: ml_collections.ConfigDict,
                  model_config: ml_collections.ConfigDict, mesh: Mesh, params: Any,
                  global_batch: int) -> list[str]:
  devices = list(mesh.devices.flat)
  processes = len({d.process_index for d in devices})
  kinds = sorted({d.device_kind for d in devices})
  mesh_text = ' x '.join(f'{name}={size}' for name, size in mesh.shape.items())
  return [f'vit-jax {kind}, config:', *config_lines(config),
          'versions: ' + ', '.join(f'{p} {_version(p)}' for p in PACKAGES),
          f'platform {devices[0].platform}: {len(devices)} device{"s" if len(devices) > 1 else ""} '
          f'({", ".join(kinds)}), '
          f'{processes} process{"es" if processes > 1 else ""}; mesh {mesh_text}',
          f'batch: global {global_batch}, per host {global_batch // processes}, '
          f'per device {global_batch // len(devices)}',
          f'model {model_config.name}: {parameter_count(params):,} parameters, '
          f'image {model_config.image_size}, dtype {model_config.dtype}',
          'the first step compiles the program: the first progress line waits for it']


def print_startup(*args, **kwargs) -> None:
  """startup_lines on process 0."""
  if jax.process_index() == 0:
    print('\n'.join(startup_lines(*args, **kwargs)), flush=True)


def _flat(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def keep_config(config: ml_collections.ConfigDict, workdir: Workdir) -> Optional[list[str]]:
  """Write the workdir's config.json (process 0); returns the keys whose values
  differ from a config.json already there (a resumed run), else None."""
  if jax.process_index() != 0:
    return None
  path = workdir.config
  new = json.loads(json.dumps(config.to_dict()))
  changed = None
  if path.exists():
    old = _flat(json.loads(path.read_text()))
    flat = _flat(new)
    changed = [f'{k} ({old.get(k)!r} -> {flat.get(k)!r})' for k in sorted(set(old) | set(flat))
               if old.get(k) != flat.get(k)]
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(new, indent=1))
  return changed
