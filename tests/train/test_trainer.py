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
