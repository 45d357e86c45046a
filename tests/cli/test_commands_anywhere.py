"""Every command run from another directory with relative paths (orbax
directories and workdirs among them), on a host without accelerators where
libtpu is installed: the paths resolve against the working directory, and
neither libtpu's start-up nor an orbax warning about our own checkpoints
is printed."""
import json
import os
import subprocess
import sys

import pytest

from conftest import xla_flags
from eval_helpers import TINY, photo_folder, tiny_checkpoint
from train_helpers import ROOT, assert_params_equal, final_params
from vit_jax import accelerators

pytestmark = pytest.mark.skipif(accelerators.present(),
                                reason='a host with an accelerator starts its runtime')


def _command(cwd, *args):
  """A command as a user runs it: no JAX_PLATFORMS, and no vit-jax checkout
  as the working directory."""
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  env['XLA_FLAGS'] = xla_flags(1)
  out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def _quiet_enough(stderr):
  """What train and eval print on stderr holds nothing of libtpu or absl."""
  for marker in ('TPU', 'libtpu', 'WARNING:absl', 'E0000', '_CHECKPOINT_METADATA'):
    assert marker not in stderr, stderr[-2000:]


def test_import_then_jax_prints_nothing(tmp_path):
  out = _command(tmp_path, '-c', 'import vit_jax, jax; print(jax.devices()[0].platform)')
  assert out.stdout.split() == ['cpu'] and out.stderr == ''


def test_commands_take_paths_relative_to_the_working_directory(tmp_path):
  photo_folder(str(tmp_path / 'data'), counts=(3, 3, 2))
  tiny_checkpoint(str(tmp_path / 'ti.orbax'))
  out = _command(tmp_path, '-m', 'convert', 'ti.orbax', 'copy.orbax')
  assert out.stdout.startswith('wrote copy.orbax (orbax') and out.stderr == ''
  assert_params_equal(final_params(tmp_path / 'copy.orbax'), final_params(tmp_path / 'ti.orbax'))
  out = _command(tmp_path, os.path.join(ROOT, 'predict.py'), '--checkpoint', 'copy.orbax',
                 'data/class_0/0.png')
  assert out.stdout.splitlines()[0] == 'data/class_0/0.png' and out.stderr == ''
  out = _command(tmp_path, os.path.join(ROOT, 'train.py'), '--config=quickstart',
                 '--workdir=run', '--config.pretrained=ti.orbax',
                 '--config.model=vit_base_patch16_224', f'--config.model_overrides={TINY}',
                 '--config.image_size=32', '--config.dataset=folder:data',
                 '--config.eval_dataset=', '--config.batch_size=4', '--config.total_steps=2',
                 '--config.warmup_steps=1', '--config.workers=2')
  _quiet_enough(out.stderr)
  assert sorted(os.listdir(tmp_path / 'run' / 'checkpoints')) == ['2']
  out = _command(tmp_path, os.path.join(ROOT, 'eval.py'), '--config.checkpoint=run',
                 '--config.dataset=folder:data', '--config.workdir=evaluated',
                 '--config.batch_size=4', '--config.workers=2')
  _quiet_enough(out.stderr)
  metrics = json.loads((tmp_path / 'evaluated' / 'metrics.json').read_text())
  assert metrics['num_examples'] == 8 and metrics['checkpoint'] == 'run'
