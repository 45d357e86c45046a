"""Training and fine-tuning of any registered Vision Transformer.

    python train.py --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Started again with the same workdir, it resumes from the latest complete
checkpoint; SIGTERM saves at the next step boundary and exits 0.
"""
from __future__ import annotations

from absl import app, flags, logging

from vit_jax.cli import define_config, fail, load_config, parse_flags

_CONFIG = define_config('configs/quickstart.py', 'training config (ml_collections file)')
_WORKDIR = flags.DEFINE_string('workdir', None, 'checkpoints, metrics.jsonl and TensorBoard')


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and jax are chatty at INFO
  config = load_config(_CONFIG)
  if not _WORKDIR.value:
    fail('set --workdir: checkpoints and metrics go there', 2)
  from vit_jax import distributed, host_memory, xla_flags
  from vit_jax.train.trainer import NonFiniteError, train
  xla_flags.set_training_flags()
  host_memory.keep_freed_memory()
  try:
    distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)
    train(config, _WORKDIR.value)
  except (ValueError, OSError, NonFiniteError) as e:  # config, data, checkpoint errors
    fail(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
