"""What the launcher adds to a command (the multi-host flags of our commands
only), its default job name, and that it imports nothing of training."""
import json
import subprocess
import sys

from vit_jax.launch import command
from train_helpers import ROOT

FLAGS = ['--config.coordinator_address=h:1', '--config.num_processes=2',
         '--config.process_id=1']


def test_our_commands_get_the_multihost_flags_and_others_run_as_given():
  for ours in (['python3', 'train.py', '--workdir=w'], ['vit-jax-eval', '--config=c'],
               ['/venv/bin/python', '-m', 'vit_jax.cli.train'], ['python', 'eval.py']):
    assert command.with_flags(ours, FLAGS) == ours + FLAGS
  for other in (['bash', '-c', 'python train.py'], ['python3', 'my_train.py']):
    assert command.with_flags(other, FLAGS) == other
  given = ['python', 'train.py', '--config.coordinator_address=auto']
  assert command.with_flags(given, FLAGS) == given  # the user's own choice stays


def test_the_default_name_is_the_workdirs_last_part():
  assert command.default_name(['python', 'train.py', '--workdir=gs://b/runs/b16/']) == 'b16'
  assert command.default_name(['vit-jax-eval', '--config.workdir=/x/eval 1']) == 'eval-1'
  assert command.default_name(['ls']).startswith('job-')


def test_the_launcher_imports_nothing_of_training():
  code = ('import sys; sys.argv = ["vit-jax-launch", "--help"]\n'
          'import contextlib, io\n'
          'with contextlib.redirect_stdout(io.StringIO()):\n'
          '  try:\n    import runpy; runpy.run_module("vit_jax.launch", run_name="__main__")\n'
          '  except SystemExit:\n    pass\n'
          'import json; print(json.dumps(sorted(sys.modules)))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
  modules = json.loads(out.stdout)
  assert 'vit_jax.launch.cli' in modules
  assert not [m for m in modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'numpy')
              or m.startswith(('vit_jax.train', 'vit_jax.models', 'vit_jax.data'))]
