"""A run's directory and the files it holds, named in one place and resolved
once where a run starts (a local path or `gs://...`)."""
from __future__ import annotations

import dataclasses

from etils import epath

from vit_jax import storage


@dataclasses.dataclass(frozen=True)
class Workdir:
  """`Workdir.at(path)`; each property is one file or directory of the run."""
  root: epath.Path

  @classmethod
  def at(cls, path: storage.PathLike) -> 'Workdir':
    return cls(storage.resolve(path))

  @property
  def config(self) -> epath.Path:
    """The resolved training config (a resumed run names the keys that changed)."""
    return self.root / 'config.json'

  @property
  def checkpoints(self) -> epath.Path:
    """orbax's CheckpointManager root: one directory per saved step."""
    return self.root / 'checkpoints'

  @property
  def metrics(self) -> epath.Path:
    """One JSON object per logged training step."""
    return self.root / 'metrics.jsonl'

  @property
  def goodput(self) -> epath.Path:
    """Where each attempt's wall time went, one row per phase."""
    return self.root / 'goodput.jsonl'

  @property
  def xla_cache(self) -> epath.Path:
    """JAX's persistent compilation cache: a restarted run skips its compiles."""
    return self.root / 'xla_cache'

  @property
  def tensorboard(self) -> epath.Path:
    """TensorBoard event files; profiles under plugins/profile/."""
    return self.root / 'tensorboard'

  @property
  def profiles(self) -> epath.Path:
    """Profiler traces, where TensorBoard's profile plugin and XProf look."""
    return self.tensorboard / 'plugins' / 'profile'

  @property
  def eval_metrics(self) -> epath.Path:
    """eval.py's result: top-1, top-5, loss, example count."""
    return self.root / 'metrics.json'

  @property
  def logits(self) -> epath.Path:
    """eval.py --config.write_logits: logits, labels and ids."""
    return self.root / 'logits.npz'
