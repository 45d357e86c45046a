"""Running train.py in subprocesses with a tiny model, for the training tests."""
import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
from etils import epath
from flax import traverse_util

from conftest import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = ("{'patch_size': 8, 'hidden_size': 16, 'num_layers': 1, 'num_heads': 2, "
              "'mlp_dim': 32, 'num_classes': 3}")


def free_port() -> int:
  """A TCP port of 127.0.0.1 that nothing listens on (for a coordinator, a server)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def tiny_args(workdir, dataset, **overrides):
  args = {'model': 'vit_tiny_patch16_224', 'model_overrides': TINY_MODEL,
          'dataset': f'folder:{dataset}', 'eval_dataset': '', 'image_size': 16,
          'batch_size': 8, 'total_steps': 12, 'warmup_steps': 2, 'optimizer': 'sgd',
          'lr': 0.05, 'checkpoint_every': 4, 'log_every': 1, 'eval_every': 0,
          'workers': 2, 'crop_scale': '(0.5, 1.0)'}
  args.update(overrides)
  return ['--config=configs/quickstart.py', f'--workdir={workdir}'] + [
      f'--config.{k}={v}' for k, v in args.items()]


def tiny_config(tmp_path, **overrides):
  """The quickstart config with the tiny model on a photo folder under
  `tmp_path`, for a run in the test's own process."""
  import ast

  from configs.quickstart import get_config
  from eval_helpers import photo_folder
  config = get_config()
  config.update(model_overrides=ast.literal_eval(TINY_MODEL), image_size=16, batch_size=8,
                warmup_steps=1, checkpoint_every=1000, eval_dataset='', workers=2,
                dataset=f'folder:{photo_folder(str(tmp_path / "data"), counts=(3, 3, 2))}')
  config.update(overrides)
  return config


def start(args, devices=2, env=None, cwd=ROOT):
  """train.py with `args`; `env` adds variables (None removes one)."""
  full_env = dict(os.environ, XLA_FLAGS=xla_flags(devices),
                  JAX_PLATFORMS='cpu', **(env or {}))
  full_env = {k: v for k, v in full_env.items() if v is not None}
  return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=cwd,
                          env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def input_workers(pid):
  """The input worker processes of process `pid` (its children running them)."""
  children = []
  for path in glob.glob(f'/proc/{pid}/task/*/children'):
    with open(path) as f:
      children += [int(child) for child in f.read().split()]

  def command(child):
    try:
      with open(f'/proc/{child}/cmdline', 'rb') as f:
        return f.read().decode(errors='replace')
    except FileNotFoundError:  # it exited meanwhile
      return ''
  return [c for c in children if 'vit_jax.data.worker_pool' in command(c)]


def run(args, devices=2, env=None, expect=0, cwd=ROOT):
  proc = start(args, devices, env, cwd)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == expect, f'rc={proc.returncode}\n{err[-3000:]}'
  return out, err


# the timing fields of a metrics row, which vary from run to run
TIMING = ('img_per_sec', 'step_time_s', 'input_wait', 'tflops_per_device', 'mfu')


def metric_rows(workdir, drop=TIMING):
  """The rows of WORKDIR/metrics.jsonl (a local or a gs:// workdir)."""
  text = (epath.Path(workdir) / 'metrics.jsonl').read_text()
  return [{k: v for k, v in json.loads(l).items() if k not in drop}
          for l in text.splitlines() if l.strip()]


def final_params(workdir):
  from vit_jax.checkpoints import load_params
  _, params = load_params(str(workdir))
  return traverse_util.flatten_dict(params, sep='/')


def assert_params_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
