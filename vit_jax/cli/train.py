"""Training and fine-tuning of any registered Vision Transformer.

    vit-jax-train --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Started again with the same workdir, it resumes from the latest complete
checkpoint. Exit codes: 0 finished, 1 a crash, 2 a user error (one line),
3 `--compile_for` does not fit, 42 stopped and resumable (SIGTERM saved, a
lost worker, a stuck step: the same command resumes). With
`--compile_for=TOPOLOGY [--plan_json=PATH]` it compiles the same step for a
TPU slice on this machine, prints the plan and exits (0: it fits) instead.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from vit_jax import exit_codes
from vit_jax.cli import (define_config, define_plan_flags, fail, fail_with, finish_plan,
                         load_config, run_absl)

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
      fail(str(e), exit_codes.USER_ERROR)
    finish_plan(plan, _PLAN_JSON.value)
  if not _WORKDIR.value:
    fail('set --workdir: checkpoints and metrics go there', exit_codes.USER_ERROR)
  from vit_jax import distributed
  from vit_jax.train.trainer import NonFiniteError, Preempted, train
  try:
    distributed.initialize(config.coordinator_address, config.num_processes, config.process_id,
                           config.heartbeat_timeout_s)
    with distributed.exit_when_a_worker_is_lost('it resumes from the last complete checkpoint'):
      train(config, _WORKDIR.value)
  except Preempted:
    sys.exit(exit_codes.RESUMABLE)
  except NonFiniteError as e:  # the recipe's (or the data's) doing: a rerun does the same
    fail(str(e), exit_codes.USER_ERROR)
  except (ValueError, OSError) as e:  # config, data, checkpoint errors
    fail_with(e)


def run() -> None:
  """The `vit-jax-train` command (and `python train.py` in a checkout)."""
  run_absl(main, __doc__)


if __name__ == '__main__':
  run()
