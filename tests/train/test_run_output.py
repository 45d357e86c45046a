"""What a run says and keeps: the start-up summary before the first step,
progress as plain lines when stdout is a file, each with the step time and
the input wait, WORKDIR/config.json, a resumed run naming the config keys
that changed, and a warning when the steps wait for their input."""
import json
import os
import subprocess
import sys
import time

from eval_helpers import photo_folder
from conftest import xla_flags
from train_helpers import ROOT, tiny_args, tiny_config


def _run_to_file(args, log_path, devices=1):
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices))
  with open(log_path, 'w') as log:
    rc = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT,
                        env=env, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
  with open(log_path) as f:
    return rc, f.read()


def test_a_run_logged_to_a_file_reads_line_by_line(tmp_path):
  data = photo_folder(str(tmp_path / 'data'), counts=(4, 4, 4))
  work = tmp_path / 'run'
  args = tiny_args(work, data, total_steps=6, log_every=2) + [
      '--config.model_overrides.remat=True']  # a field the recipe's dict does not have
  rc, text = _run_to_file(args, tmp_path / 'log.txt')
  assert rc == 0, text[-2000:]
  lines = text.splitlines()
  assert '\r' not in text and max(len(line) for line in lines) <= 400
  first_step = next(i for i, line in enumerate(lines) if line.startswith('train 2/6'))
  summary = '\n'.join(lines[:first_step])
  for expected in ('vit-jax training, config:', '  lr: 0.05', 'versions: jax ',
                   'platform cpu: 1 device (cpu)', 'batch: global 8, per host 8, per device 8',
                   'model vit_tiny_patch16_224: ', ' parameters', 'first step compiles'):
    assert expected in summary, expected
  progress = [line for line in lines if line.startswith('train ')]
  assert [line.split()[1] for line in progress] == ['2/6', '4/6', '6/6']
  assert all('loss ' in line and 'img/s' in line and 'ETA' in line for line in progress)
  assert all(' input_wait ' in line and ' step_time_s ' in line for line in progress)
  rows = [json.loads(line) for line in (work / 'metrics.jsonl').read_text().splitlines()]
  # on CPU no FLOP figures (tflops_per_device, mfu): the model's FLOPs are not counted
  assert all(set(r) == {'step', 'loss', 'lr', 'grad_norm', 'img_per_sec', 'step_time_s',
                        'input_wait'} for r in rows), rows[0]
  assert all(r['step_time_s'] > 0 and 0 <= r['input_wait'] < 1 for r in rows)
  kept = json.loads((work / 'config.json').read_text())
  assert (kept['model'], kept['batch_size'], kept['lr']) == ('vit_tiny_patch16_224', 8, 0.05)
  assert kept['model_overrides']['remat'] is True

  # the same workdir with another learning rate and more steps: the change is named
  rc, text = _run_to_file(tiny_args(work, data, total_steps=8, log_every=2, lr=0.01),
                          tmp_path / 'log2.txt')
  assert rc == 0, text[-2000:]
  changed = next(line for line in text.splitlines() if line.startswith('resuming with'))
  assert "lr (0.05 -> 0.01)" in changed and "total_steps (6 -> 8)" in changed
  assert json.loads((work / 'config.json').read_text())['lr'] == 0.01


def test_an_unknown_model_field_is_one_line(tmp_path):
  rc, text = _run_to_file(['--config=configs/quickstart.py', f'--workdir={tmp_path}',
                           '--config.model_overrides.dropout=0.1'], tmp_path / 'log.txt')
  assert rc == 2
  assert text.strip().startswith('error: --config.model_overrides.dropout: the model config '
                                 "has no field 'dropout'") and len(text.strip().splitlines()) == 1


def test_a_slow_input_is_named_with_the_keys_to_raise(tmp_path, monkeypatch, capsys):
  """Batches that take 0.2 s each to arrive: steps 2-4 wait for theirs (the
  last two were fetched ahead), and one warning says so once the first
  interval (the compile) is past."""
  from vit_jax.train import trainer

  batches = trainer.train_batches

  def slow_batches(*args, **kwargs):
    for batch in batches(*args, **kwargs):
      time.sleep(0.2)
      yield batch
  monkeypatch.setattr(trainer, 'train_batches', slow_batches)
  work = tmp_path / 'work'
  trainer.train(tiny_config(tmp_path, total_steps=6, log_every=1), str(work))
  lines = capsys.readouterr().out.splitlines()
  rows = [json.loads(line) for line in (work / 'metrics.jsonl').read_text().splitlines()]
  assert all(r['input_wait'] > 0.5 for r in rows[1:4]), rows
  warnings = [i for i, line in enumerate(lines) if line.startswith('input-bound: ')]
  assert len(warnings) == 1 and lines[warnings[0] - 1].startswith('train 2/6'), lines
  assert '--config.workers' in lines[warnings[0]]
  assert '--config.worker_processes=True' in lines[warnings[0]]
