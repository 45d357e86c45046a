"""Running train.py in subprocesses with a tiny model, for the training tests."""
import json
import os
import subprocess
import sys

import numpy as np
from flax import traverse_util

from conftest import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = ("{'patch_size': 8, 'hidden_size': 16, 'num_layers': 1, 'num_heads': 2, "
              "'mlp_dim': 32, 'num_classes': 3}")


def tiny_args(workdir, dataset, **overrides):
  args = {'model': 'vit_tiny_patch16_224', 'model_overrides': TINY_MODEL,
          'dataset': f'folder:{dataset}', 'eval_dataset': '', 'image_size': 16,
          'batch_size': 8, 'total_steps': 12, 'warmup_steps': 2, 'optimizer': 'sgd',
          'lr': 0.05, 'checkpoint_every': 4, 'log_every': 1, 'eval_every': 0,
          'workers': 2, 'crop_scale': '(0.5, 1.0)'}
  args.update(overrides)
  return ['--config=configs/quickstart.py', f'--workdir={workdir}'] + [
      f'--config.{k}={v}' for k, v in args.items()]


def start(args, devices=2, env=None):
  full_env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
                  JAX_PLATFORMS='cpu', **(env or {}))
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT,
                          env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def run(args, devices=2, env=None, expect=0):
  proc = start(args, devices, env)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == expect, f'rc={proc.returncode}\n{err[-3000:]}'
  return out, err


def metric_rows(workdir, drop=('img_per_sec',)):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in f if l.strip()]


def final_params(workdir):
  from vit_jax.checkpoints import load_params
  _, params = load_params(str(workdir))
  return traverse_util.flatten_dict(params, sep='/')


def assert_params_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
