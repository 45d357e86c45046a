"""The package installed (not editable) and run from outside the checkout:
its commands answer --help, and vit-jax-train runs the quickstart
recipe by name."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ('vit-jax-train', 'vit-jax-eval', 'vit-jax-convert', 'vit-jax-predict', 'vit-jax-launch')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
  """A non-editable install into a folder of its own (its scripts run with
  this interpreter; the folder comes first on the path, before the checkout's
  editable install)."""
  target = tmp_path_factory.mktemp('installed')
  out = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                        '--target', str(target), ROOT], capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  env = dict(os.environ, PYTHONPATH=str(target))
  return target, env


def _run(installed, *args, cwd):
  target, env = installed
  return subprocess.run([os.path.join(target, 'bin', args[0]), *args[1:]], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def test_the_installed_package_is_the_one_imported(installed, tmp_path):
  target, env = installed
  out = subprocess.run([sys.executable, '-c', 'import vit_jax, configs; print(vit_jax.__file__);'
                        'print(configs.__file__)'], cwd=tmp_path, env=env, capture_output=True,
                       text=True)
  assert all(line.startswith(str(target)) for line in out.stdout.split()), out.stdout
  assert (target / 'vit_jax' / 'backends' / 'cpu' / 'csrc' / 'attention.cc').exists()


@pytest.mark.parametrize('command', COMMANDS)
def test_each_command_answers_help(installed, tmp_path, command):
  out = _run(installed, command, '--help', cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'usage' in out.stdout.lower() or '--config' in out.stdout


def test_vit_jax_train_runs_the_quickstart_by_name(installed, tmp_path):
  work = tmp_path / 'run'
  out = _run(installed, 'vit-jax-train', '--config=quickstart', f'--workdir={work}',
             f'--config.data_dir={tmp_path / "digits"}', '--config.total_steps=3',
             '--config.model_overrides.num_layers=1', '--config.batch_size=16',
             '--config.log_every=1', "--config.eval_dataset=", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-2000:]
  assert 'train 3/3' in out.stdout
  rows = [json.loads(line) for line in (work / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [1, 2, 3]
