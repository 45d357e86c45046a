"""Top-1 / top-5 evaluation of any registered model and checkpoint.

    vit-jax-eval --config=configs/eval.py --config.model=NAME \
        --config.checkpoint=PATH --config.dataset=DATASET --config.workdir=DIR

With `--compile_for=TOPOLOGY [--plan_json=PATH]` it compiles the eval step
for a TPU slice on this machine, prints the plan and exits (0: it fits).
Exit codes: 0 done, 1 a crash, 2 a user error (one line), 3 `--compile_for`
does not fit, 42 a lost worker (the same command starts over).
"""
from __future__ import annotations

import json

from absl import app, logging

from vit_jax.cli import (define_config, define_plan_flags, fail_with, finish_plan, load_config,
                         run_absl)

_CONFIG = define_config('configs/eval.py', 'evaluation config (ml_collections file)')
_COMPILE_FOR, _PLAN_JSON = define_plan_flags()


def plan(config) -> dict:
  """The eval step's plan: the model from --config.model (shapes only), else
  from the checkpoint's own description."""
  from vit_jax.models import registry
  from vit_jax.plan.steps import plan_eval
  if config.model:
    model_cfg = registry.get_model_config(config.model, **dict(config.model_overrides))
  elif config.checkpoint:
    from vit_jax.checkpoints import load_params
    model_cfg, _ = load_params(config.checkpoint, None, **dict(config.model_overrides))
  else:
    raise ValueError('set --config.model (or --config.checkpoint) to plan its eval step')
  return plan_eval(config, model_cfg, _COMPILE_FOR.value)


def evaluate_checkpoint(config) -> dict:
  import jax
  import numpy as np
  from vit_jax import distributed
  from vit_jax.models import registry
  from vit_jax.checkpoints import load_params
  from vit_jax.eval.evaluate import evaluate

  distributed.initialize(config.coordinator_address, config.num_processes, config.process_id,
                         config.heartbeat_timeout_s)
  if not config.checkpoint:
    raise ValueError('set --config.checkpoint to the weights to evaluate')
  if not config.workdir:
    raise ValueError('set --config.workdir: metrics.json is written there')
  model_cfg, params = load_params(config.checkpoint, config.model or None,
                                  **dict(config.model_overrides))
  model = registry.module_from_config(model_cfg)
  from vit_jax import parallel, summary
  mesh = parallel.make_mesh()
  summary.print_startup('evaluation', config, model_cfg, mesh, params, config.batch_size)
  result = evaluate(model, params, config.dataset, model_config=model_cfg,
                    batch_size=config.batch_size, mesh=mesh, data_dir=config.data_dir,
                    class_names=config.class_names, workers=config.workers,
                    strict=config.strict, write_logits=config.write_logits)
  metrics = {'top1': result['top1'], 'top5': result['top5'], 'loss': result['loss'],
             'num_examples': result['num_examples'], 'num_skipped': result['num_skipped'],
             'skipped': result['skipped'], 'model': model_cfg.name,
             'checkpoint': config.checkpoint, 'dataset': config.dataset}
  if jax.process_index() == 0:
    from vit_jax import storage
    from vit_jax.workdir import Workdir
    workdir = Workdir.at(config.workdir)
    workdir.root.mkdir(parents=True, exist_ok=True)
    workdir.eval_metrics.write_text(json.dumps(metrics, indent=1))
    if config.write_logits:
      storage.write_file(workdir.logits, lambda f: np.savez(
          f, logits=result['logits'], labels=result['labels'], ids=result['ids']))
    skipped = f'  skipped {metrics["num_skipped"]} unreadable' if metrics['num_skipped'] else ''
    print(f'{model_cfg.name} on {config.dataset}: top-1 {100 * metrics["top1"]:.2f}%  '
          f'top-5 {100 * metrics["top5"]:.2f}%  loss {metrics["loss"]:.4f}  '
          f'examples {metrics["num_examples"]}{skipped}')
  return metrics


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and jax are chatty at INFO
  from vit_jax import backends
  backends.configure_process()
  config = load_config(_CONFIG)
  try:
    if _COMPILE_FOR.value:
      finish_plan(plan(config), _PLAN_JSON.value)
    from vit_jax import distributed
    with distributed.exit_when_a_worker_is_lost('the evaluation starts over'):
      evaluate_checkpoint(config)
  except (ValueError, OSError) as e:  # topology, dataset, checkpoint and config errors
    fail_with(e)


def run() -> None:
  """The `vit-jax-eval` command (and `python eval.py` in a checkout)."""
  run_absl(main, __doc__)


if __name__ == '__main__':
  run()
