"""Kill -9 (twice, once in the middle of a checkpoint save) and SIGTERM
(saved, exit 42): the resumed run ends bit-identical to an uninterrupted one,
whether its input was decoded in threads or in worker processes, with
RandAugment and Mixup on."""
import json
import os
import re
import signal
import time

import pytest

from eval_helpers import photo_folder
from train_helpers import (assert_params_equal, final_params, input_workers, metric_rows, run,
                           start, tiny_args)


# big_vision's recipe augmentation: RandAugment(2, 10) on the host, Mixup 0.2 in the step
AUGMENTED = {'randaug': '(2, 10)', 'mixup': 0.2}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('resume')
  data = photo_folder(str(tmp / 'data'), counts=(8, 7, 6))
  run(tiny_args(tmp / 'straight', data, **AUGMENTED))
  return tmp, data


def test_the_quickstart_model_trains_with_randaugment_and_mixup(reference):
  tmp, _ = reference
  config = json.loads((tmp / 'straight' / 'config.json').read_text())
  assert config['randaug'] == [2, 10] and config['mixup'] == 0.2
  losses = [r['loss'] for r in metric_rows(tmp / 'straight')]
  assert len(losses) == 12 and all(0 < loss < 5 for loss in losses)


def test_sigkill_at_a_step_and_during_a_save_then_resume_is_bit_exact(reference):
  tmp, data = reference
  work = tmp / 'killed'
  # 1: killed at step 6 (checkpoint 4 is complete), decoding in worker processes
  processes = tiny_args(work, data, worker_processes=True, **AUGMENTED)
  run(processes, env={'VIT_JAX_FAULT': 'step:6'}, expect=-signal.SIGKILL)
  assert sorted(os.listdir(work / 'checkpoints')) == ['4']
  # 2: resumed at 4, killed right after the asynchronous save of step 8 started
  out, _ = run(processes, env={'VIT_JAX_FAULT': 'save:8'}, expect=-signal.SIGKILL)
  assert 'resumed from' in out and 'at step 4' in out
  # 3: resumed from the last complete checkpoint and run to the end, in threads
  out, _ = run(tiny_args(work, data, **AUGMENTED))
  assert 'resumed from' in out
  assert_params_equal(final_params(work), final_params(tmp / 'straight'))
  assert metric_rows(work) == metric_rows(tmp / 'straight')
  assert [r['step'] for r in metric_rows(work)] == list(range(1, 13))


def test_sigterm_saves_at_the_next_step_and_exits_42(reference):
  tmp, data = reference
  work = tmp / 'preempted'
  proc = start(tiny_args(work, data, total_steps=400, checkpoint_every=1000,
                         worker_processes=True))
  deadline = time.time() + 120
  while time.time() < deadline:
    rows = metric_rows(work) if (work / 'metrics.jsonl').exists() else []
    if len(rows) >= 3:
      break
    time.sleep(0.2)
  # to the input worker processes too, as a preemption signals the process
  # group: they ignore it, and the training process saves
  workers = input_workers(proc.pid)
  assert workers
  for pid in [proc.pid, *workers]:
    os.kill(pid, signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 42, err[-2000:]  # stopped and resumable
  signalled, saved = map(int, re.search(r'SIGTERM after step (\d+): saved step (\d+); '
                                        r'exiting with 42: the same command resumes',
                                        out).groups())
  assert 3 <= signalled and saved == signalled + 1
  assert os.listdir(work / 'checkpoints') == [str(saved)]
  out, _ = run(tiny_args(work, data, total_steps=saved + 2, checkpoint_every=1000))
  assert f'at step {saved}' in out
  assert [r['step'] for r in metric_rows(work)][-3:] == [saved, saved + 1, saved + 2]
