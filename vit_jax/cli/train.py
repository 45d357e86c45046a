"""Training and fine-tuning of any registered Vision Transformer.

    vit-jax-train --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Started again with the same workdir, it resumes from the latest complete
checkpoint; SIGTERM saves at the next step boundary and exits 0. With
`--compile_for=TOPOLOGY [--plan_json=PATH]` it compiles the same step for a
TPU slice on this machine, prints the plan and exits (0: it fits) instead.
"""
from __future__ import annotations

from absl import app, flags, logging

from vit_jax.cli import (define_config, define_plan_flags, fail, finish_plan, load_config,
                         run_absl)

_CONFIG = define_config('configs/quickstart.py', 'training config (ml_collections file)')
_WORKDIR = flags.DEFINE_string('workdir', None, 'checkpoints, metrics.jsonl and TensorBoard')
_COMPILE_FOR, _PLAN_JSON = define_plan_flags()


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and jax are chatty at INFO
  config = load_config(_CONFIG)
  from vit_jax import backends
  backends.configure_process(training=True)
  if _COMPILE_FOR.value:
    from vit_jax.plan.steps import plan_training
    try:
      plan = plan_training(config, _COMPILE_FOR.value)
    except ValueError as e:  # topology, batch and config errors
      fail(str(e), 2)
    finish_plan(plan, _PLAN_JSON.value)
  if not _WORKDIR.value:
    fail('set --workdir: checkpoints and metrics go there', 2)
  from vit_jax import distributed
  from vit_jax.train.trainer import NonFiniteError, train
  try:
    distributed.initialize(config.coordinator_address, config.num_processes, config.process_id,
                           config.heartbeat_timeout_s)
    with distributed.exit_when_a_worker_is_lost('it resumes from the last complete checkpoint'):
      train(config, _WORKDIR.value)
  except (ValueError, OSError, NonFiniteError) as e:  # config, data, checkpoint errors
    fail(str(e))


def run() -> None:
  """The `vit-jax-train` command (and `python train.py` in a checkout)."""
  run_absl(main, __doc__)


if __name__ == '__main__':
  run()
