"""Training checkpoints: orbax CheckpointManager, atomic and asynchronous.

Each step holds the items `params` and `model` (so `load_params(workdir)`
reads it like any orbax checkpoint), `train_state` (optimizer state, step,
rng, first bad step) and `data` (the input position: the step, since the
pipeline is a pure function of seed and step). Orbax writes each step to a
temporary directory and renames it when complete (on Cloud Storage, which
renames no directories, it writes a commit file last), so a crash mid-save
leaves the previous checkpoint as the latest.
"""
from __future__ import annotations

from typing import Any, Optional

import ml_collections
import orbax.checkpoint as ocp

from vit_jax.checkpoints.orbax_io import model_record
from vit_jax.workdir import Workdir

_REST = ('opt_state', 'rng', 'step', 'bad_step')


class Checkpointer:

  def __init__(self, workdir: Workdir, keep: int):
    self.manager = ocp.CheckpointManager(
        workdir.checkpoints,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: dict, model_config: ml_collections.ConfigDict) -> None:
    """Starts an asynchronous save; the next save or `wait` completes it."""
    self.manager.save(step, force=True, args=ocp.args.Composite(
        params=ocp.args.StandardSave(state['params']),
        train_state=ocp.args.StandardSave({k: state[k] for k in _REST}),
        model=ocp.args.JsonSave(model_record(model_config)),
        data=ocp.args.JsonSave({'position': step})))

  def restore(self, step: int, abstract_state: Any) -> dict:
    """The state at `step`, laid out as `abstract_state` (shapes + shardings)."""
    out = self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_state['params']),
        train_state=ocp.args.StandardRestore({k: abstract_state[k] for k in _REST}),
        data=ocp.args.JsonRestore()))
    if out['data']['position'] != step:
      raise ValueError(f'checkpoint {step}: data position {out["data"]["position"]} '
                       'does not match its step')
    return {'params': out['params'], **out['train_state']}

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
