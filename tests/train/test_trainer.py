"""The trainer library end to end: a shortened quickstart learns the digits."""
import json
import os

import numpy as np

from vit_jax.train.trainer import train


def test_a_short_quickstart_lowers_the_loss_and_beats_chance(tmp_path, capsys):
  from configs.quickstart import get_config
  config = get_config()
  config.data_dir = str(tmp_path / 'data')   # the digits folder is written here once
  config.total_steps, config.warmup_steps = 100, 20
  config.image_size = 16  # scikit-learn's digits are 8x8: every pixel stays, 4x fewer tokens
  config.log_every, config.eval_every, config.checkpoint_every = 10, 0, 1000
  config.workers = 2
  workdir = str(tmp_path / 'work')
  last = train(config, workdir)

  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  assert [r['step'] for r in rows] == list(range(10, 101, 10))
  losses = [r['loss'] for r in rows]
  assert np.log(10) * 0.9 < losses[0] and losses[-1] < 0.75 * losses[0], losses
  assert all(r['img_per_sec'] > 0 and r['grad_norm'] > 0 for r in rows)
  # the lr of the last step (index 99 of the cosine) is nearly zero
  assert rows[-1]['lr'] < 1e-3 * config.lr and max(r['lr'] for r in rows) <= config.lr
  # evaluated once, at the end, on the held-out split: chance is 10%
  assert 'top1' in rows[-1] and all('top1' not in r for r in rows[:-1])
  assert rows[-1]['top1'] == last['top1'] >= 0.5, rows[-1]
  assert 0.0 <= rows[-1]['top1'] <= rows[-1]['top5'] <= 1.0
  assert f'top-1 {100 * last["top1"]:.2f}%' in capsys.readouterr().out
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['100']
  assert any(n.startswith('events.out.tfevents')
             for n in os.listdir(os.path.join(workdir, 'tensorboard')))


def test_between_log_steps_the_loop_moves_nothing_to_the_host_and_runs_ahead(tmp_path,
                                                                             monkeypatch):
  """The loop's steps run under jax.transfer_guard_device_to_host('disallow_explicit').
  CPU arrays are host memory, so JAX does not check the guard on the CPU:
  here the conversion of an array to NumPy checks it, as on TPU and GPU.
  And with a step that keeps the device busy (a chain of matmuls on the
  state), the host dispatches the steps up to a log step before the device
  has finished the first: nothing waits for the device per step."""
  import time

  import jax
  import jax.numpy as jnp
  from jax._src import config as jax_config
  from jax._src.array import ArrayImpl

  from train_helpers import tiny_config
  from vit_jax.train import compilation

  to_numpy = ArrayImpl._single_device_array_to_np_array_did_copy
  guarded = []

  def checked(self):
    if (jax_config.transfer_guard_device_to_host.value or '').startswith('disallow'):
      guarded.append(self.shape)
      raise RuntimeError('device-to-host transfer in the guarded loop')
    return to_numpy(self)
  monkeypatch.setattr(ArrayImpl, '_single_device_array_to_np_array_did_copy', checked)

  @jax.jit
  def busy(state):  # about a step's worth of device work that the next step waits on
    m = jnp.full((384, 384), 1 / 384) + state['step'] * 0
    m = jax.lax.fori_loop(0, 60, lambda i, m: jnp.tanh(m @ m), m)
    return {**state, 'step': state['step'] + (m[0, 0] * 0).astype(state['step'].dtype)}
  state = {'step': jnp.zeros((), jnp.int32)}
  busy(state)['step'].block_until_ready()
  start = time.perf_counter()
  busy(state)['step'].block_until_ready()
  busy_s = time.perf_counter() - start

  compile_step, dispatched = compilation.compile_step, []

  def slow_compile(*args):
    compiled = compile_step(*args)
    step = compiled.step

    def slow_step(state, images, labels):
      dispatched.append(time.perf_counter())
      state, metrics = step(state, images, labels)
      return busy(state), metrics
    compiled.step = slow_step
    return compiled
  monkeypatch.setattr(compilation, 'compile_step', slow_compile)
  train(tiny_config(tmp_path, total_steps=8, log_every=4), str(tmp_path / 'work'))
  assert not guarded and len(dispatched) == 8
  # steps 2-4 and 5-8 (the first call compiles `busy` for the whole state): a
  # wait for the device at each step would put at least a step's device time
  # between two; the host's own work (on the same cores here) takes far less
  for first, last in ((1, 3), (4, 7)):
    assert dispatched[last] - dispatched[first] < (last - first) * busy_s / 2, (
        dispatched, busy_s)



def test_epochs_and_several_evaluations(tmp_path, monkeypatch, capsys):
  """total_epochs of the training folder (8 images, batch 8: 8 epochs = 8
  steps, the run above, whose compiled step it reuses); eval_dataset and two
  named evals at steps 4 and 8 with the evaluation step compiled once."""
  from eval_helpers import photo_folder
  from train_helpers import tiny_config
  from vit_jax.eval import evaluate as evaluate_module
  made = []
  make_eval_step = evaluate_module.make_eval_step
  monkeypatch.setattr(evaluate_module, 'make_eval_step',
                      lambda *a: made.append(1) or make_eval_step(*a))
  config = tiny_config(tmp_path, total_steps=0, total_epochs=8.0, log_every=4,
                       eval_every=4, eval_batch_size=4)
  other = photo_folder(str(tmp_path / 'other'), counts=(1, 2, 1))
  config.eval_dataset = config.dataset
  config.evals = {'again': config.dataset, 'other': f'folder:{other}'}
  workdir = tmp_path / 'work'
  last = train(config, str(workdir))
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows] == [4, 8] and len(made) == 1
  for r in rows:  # the same dataset twice: the same counts
    assert (r['again/top1'], r['again/top5']) == (r['top1'], r['top5'])
    assert r['other/top1'] in (0.0, 0.25, 0.5, 0.75, 1.0) and r['other/top5'] == 1.0  # 3 classes
  assert last['other/top1'] == rows[-1]['other/top1']
  kept = json.loads((workdir / 'config.json').read_text())
  assert (kept['total_steps'], kept['total_epochs']) == (8, 8.0)
  out = capsys.readouterr().out
  assert 'length: 8 steps of 8 = 8.00 epochs of 8 examples (from total_epochs)' in out
  assert f'held-out folder:{other}: top-1 {100 * last["other/top1"]:.2f}%' in out
  assert out.count('held-out ') == 3
