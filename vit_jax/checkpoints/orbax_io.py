"""Our own checkpoint format: an orbax Composite with `params` and `model`.

A training step checkpoint holds the same two items (plus optimizer state and
the rest), so a single checkpoint and a training workdir read alike.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from vit_jax import storage
from vit_jax.models import registry
from vit_jax.checkpoints.errors import CheckpointError
from vit_jax.workdir import Workdir

FORMAT = 'vit_jax'
DATA_FILE_BYTES = 32 << 20  # see write()


def model_record(config: ml_collections.ConfigDict) -> dict:
  """JSON-able description of a model config, stored beside the params."""
  return {'format': FORMAT, 'model': config.name, 'config': config.to_dict()}


def config_from_record(record: dict, source: str) -> ml_collections.ConfigDict:
  if not isinstance(record, dict) or record.get('format') != FORMAT:
    raise CheckpointError(f'{source}: model description is not a vit_jax record')
  # attention_impl: records written before the implementation followed the devices
  fields = {k: v for k, v in record['config'].items() if k not in ('name', 'attention_impl')}
  try:
    return registry.get_model_config(record['model'], **fields)
  except ValueError as e:
    raise CheckpointError(f'{source}: {e}') from None


def latest_step_dir(path: str) -> Optional[epath.Path]:
  """The newest complete step of a CheckpointManager root or a workdir."""
  root = storage.resolve(path)
  if Workdir(root).checkpoints.is_dir():
    root = Workdir(root).checkpoints
  steps = [int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / 'params').is_dir()]
  if not steps:
    return None
  step = ocp.CheckpointManager(root).latest_step()
  return root / str(step if step is not None else max(steps))


def checkpoint_dir(path: str) -> epath.Path:
  """`path` itself when it is one checkpoint, else its latest step."""
  if (storage.resolve(path) / 'params').is_dir():
    return storage.resolve(path)
  step_dir = latest_step_dir(path)
  if step_dir is None:
    raise CheckpointError(f'{path}: a directory, but neither an orbax checkpoint (no params/) '
                          'nor a training workdir with a complete checkpoint')
  return step_dir


def _reader() -> ocp.Checkpointer:
  """A Checkpointer for the Composite both layouts are: a handler for every
  item a step may hold, so that orbax finds each item's metadata and warns
  of none it cannot read."""
  handlers = ocp.DefaultCheckpointHandlerRegistry()
  for item in ('params', 'train_state'):
    handlers.add(item, ocp.args.PyTreeRestore, ocp.PyTreeCheckpointHandler())
  for item in ('model', 'data'):
    handlers.add(item, ocp.args.JsonRestore, ocp.JsonCheckpointHandler())
  return ocp.Checkpointer(ocp.CompositeCheckpointHandler(handler_registry=handlers))


def read(path: str) -> tuple[dict, Any]:
  """(model record, nested params of numpy arrays) of a checkpoint dir.

  Restored as host arrays, so a checkpoint written on any device topology
  (a training run on 8 GPUs, say) reads on this machine."""
  ckpt = checkpoint_dir(path)
  try:
    with _reader() as c:
      meta = c.metadata(ckpt).item_metadata['params']
      as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), meta)
      out = c.restore(ckpt, ocp.args.Composite(
          params=ocp.args.PyTreeRestore(restore_args=as_numpy), model=ocp.args.JsonRestore()))
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise CheckpointError(f'{ckpt}: unreadable orbax checkpoint ({type(e).__name__}: '
                          f'{str(e).splitlines()[0] if str(e) else ""})') from None
  return out['model'], out['params']


def write(path: str, params: Any, config: ml_collections.ConfigDict) -> None:
  """Write atomically: orbax commits by renaming a finished temporary dir.

  Two orbax defaults each kept about the checkpoint's size resident on top of
  the arrays: the numpy handler deep-copies every array up front (a guard
  against the caller changing it during an asynchronous save; this save returns
  only when done), and OCDBT buffers encoded data until a 2 GiB data file is
  full. So arrays go out uncopied, in data files of about DATA_FILE_BYTES."""
  arrays = ocp.type_handlers.create_type_handler_registry(  # jax.Array's: orbax looks for it
      (np.ndarray, ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False)),
      (jax.Array, ocp.type_handlers.get_type_handler(jax.Array)))
  handlers = ocp.DefaultCheckpointHandlerRegistry()
  handlers.add('params', ocp.args.PyTreeSave,
               ocp.PyTreeCheckpointHandler(type_handler_registry=arrays))
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler(handler_registry=handlers)) as c:
    c.save(storage.resolve(path), ocp.args.Composite(
        params=ocp.args.PyTreeSave(params, ocdbt_target_data_file_size=DATA_FILE_BYTES),
        model=ocp.args.JsonSave(model_record(config))))
