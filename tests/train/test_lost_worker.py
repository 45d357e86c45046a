"""Two processes training together, one killed with kill -9: the other exits
non-zero within heartbeat_timeout_s + 30 s with one line saying what to do,
and the same command run again on both resumes bit-identically."""
import signal
import time

from eval_helpers import photo_folder
from train_helpers import (assert_params_equal, final_params, free_port, metric_rows, start,
                           tiny_args)
from vit_jax.distributed import EXIT_LOST_WORKER

HEARTBEAT_S = 5


def _pair(workdir, data, fault=None):
  """Process 0 and process 1 of one run; `fault` is process 1's VIT_JAX_FAULT."""
  port = free_port()
  return [start(tiny_args(workdir, data, total_steps=8, checkpoint_every=4,
                          coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                          process_id=i, heartbeat_timeout_s=HEARTBEAT_S),
                devices=1, env={'VIT_JAX_FAULT': fault} if fault and i == 1 else None)
          for i in range(2)]


def _finish(procs):
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def test_a_lost_worker_stops_the_others_and_the_same_command_resumes(tmp_path):
  data = photo_folder(str(tmp_path / 'data'), counts=(6, 5, 5))
  _finish(_pair(tmp_path / 'straight', data))
  work = tmp_path / 'lost'
  survivor, victim = _pair(work, data, fault='step:6')  # process 1 dies before step 6
  victim.wait(timeout=300)
  died = time.monotonic()
  _, err = survivor.communicate(timeout=HEARTBEAT_S + 60)
  assert victim.returncode == -signal.SIGKILL
  assert survivor.returncode == EXIT_LOST_WORKER
  assert time.monotonic() - died < HEARTBEAT_S + 30
  last = err.strip().splitlines()[-1]
  assert last.startswith('error: process 0 of 2 lost another worker (')
  assert last.endswith('run the same command again on every worker: it resumes from the '
                       'last complete checkpoint')
  assert 'Traceback' not in err and 'stack trace' not in err
  assert sorted(p.name for p in (work / 'checkpoints').iterdir()) == ['4']
  outs = _finish(_pair(work, data))
  assert 'resumed from' in outs[0][0] and 'at step 4' in outs[0][0]
  assert_params_equal(final_params(work), final_params(tmp_path / 'straight'))
  assert metric_rows(work) == metric_rows(tmp_path / 'straight')
