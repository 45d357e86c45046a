"""Two processes training together, one killed with kill -9: the other exits
42 (resumable) within heartbeat_timeout_s + 30 s with one line saying what
to do. (That the same command then resumes both bit-identically is the
launcher's test, tests/launch/test_launch_hosts.py, which reruns them.)"""
import signal
import time

from eval_helpers import photo_folder
from train_helpers import free_port, start, tiny_args
from vit_jax.exit_codes import RESUMABLE

HEARTBEAT_S = 5


def test_a_lost_worker_stops_the_others_with_42(tmp_path):
  data = photo_folder(str(tmp_path / 'data'), counts=(6, 5, 5))
  work = tmp_path / 'lost'
  port = free_port()
  survivor, victim = [
      start(tiny_args(work, data, total_steps=8, checkpoint_every=4,
                      coordinator_address=f'127.0.0.1:{port}', num_processes=2, process_id=i,
                      heartbeat_timeout_s=HEARTBEAT_S),
            devices=1, env={'VIT_JAX_FAULT': 'step:6'} if i == 1 else None)  # dies before 6
      for i in range(2)]
  victim.wait(timeout=300)
  died = time.monotonic()
  _, err = survivor.communicate(timeout=HEARTBEAT_S + 60)
  assert victim.returncode == -signal.SIGKILL
  assert survivor.returncode == RESUMABLE
  assert time.monotonic() - died < HEARTBEAT_S + 30
  last = err.strip().splitlines()[-1]
  assert last.startswith('error: process 0 of 2 lost another worker (')
  assert last.endswith('run the same command again on every worker: it resumes from the '
                       'last complete checkpoint')
  assert 'Traceback' not in err and 'stack trace' not in err
  assert sorted(p.name for p in (work / 'checkpoints').iterdir()) == ['4']
