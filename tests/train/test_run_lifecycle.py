"""One run through a kill and two starts: killed with kill -9 at step 7, it
restarts loading its step from the workdir's compilation cache, runs steps
5-6 again and counts them as recomputed in goodput.jsonl, writes the
profile of steps 5-6 where TensorBoard reads it, and, stuck at step 9, is
ended by the step watchdog: every thread's stack, one line naming the step,
exit 42."""
import glob
import json
import os
import signal

from jax.profiler import ProfileData

from eval_helpers import photo_folder
from train_helpers import run, tiny_args


def _ledger(work):
  return [json.loads(l) for l in (work / 'goodput.jsonl').read_text().splitlines()]


def test_kill_restart_from_the_cache_recomputed_steps_a_profile_and_a_stuck_step(tmp_path):
  data = photo_folder(str(tmp_path / 'data'), counts=(6, 5, 5))
  work = tmp_path / 'work'
  args = tiny_args(work, data, total_steps=10, checkpoint_every=4)
  own_cache = {'JAX_COMPILATION_CACHE_DIR': None}  # the workdir's, not the test suite's
  out, _ = run(args, devices=1, env={**own_cache, 'VIT_JAX_FAULT': 'step:7'},
               expect=-signal.SIGKILL)
  assert f'training step compiled in ' in out and f'(cached in {work}/xla_cache)' in out
  assert sorted(os.listdir(work / 'checkpoints')) == ['4']
  first = _ledger(work)
  assert {r['phase']: r['steps'] for r in first} == {
      'startup': 0, 'restore': 0, 'compile': 0, 'steps': 6, 'input_wait': 0, 'checkpoint': 0,
      'eval': 0, 'recomputed': 0}  # as of its last log step, 6
  assert all(r['attempt'] == 1 for r in first)

  out, err = run(args + ['--config.profile_steps=5,2', '--config.step_timeout_s=3'], devices=1,
                 env={**own_cache, 'VIT_JAX_FAULT': 'hang:9'}, expect=42)
  assert 'resumed from' in out and 'at step 4' in out
  assert f'training step loaded from the compilation cache {work}/xla_cache in ' in out
  assert 'the restart skipped the compile' in out
  assert 'steps 5-6 run again: an earlier attempt got to step 6, past the checkpoint of step 4' \
      in out
  second = {r['phase']: r for r in _ledger(work) if r['attempt'] == 2}
  assert second['restore']['steps'] == 4 and second['recomputed']['steps'] == 2
  assert second['steps']['steps'] == 2  # 7 and 8, flushed at log step 8
  assert second['recomputed']['seconds'] > 0 and second['compile']['seconds'] > 0

  # the profile: TensorBoard's profile plugin layout, an XSpace holding the two steps
  traces = glob.glob(str(work / 'tensorboard' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  assert len(traces) == 1, traces
  profile = ProfileData.from_file(traces[0])
  host = next(p for p in profile.planes if p.name == '/host:CPU')
  names = [e.name for line in host.lines for e in line.events]
  assert names.count('train') == 2  # the step annotations of steps 5 and 6
  assert f'profile of steps 5-6 written to {work}/tensorboard/plugins/profile' in out

  # the watchdog: the stuck thread's stack (the fault's sleep), then one line
  assert 'most recent call first' in err and 'in _fault' in err
  assert err.strip().splitlines()[-1] == (
      'error: no training step finished in 3 s: the loop waited on step 9 (a hung collective '
      "or input, or a stuck device; every thread's stack is above); exiting with 42 to be "
      'restarted: the same command resumes from the last complete checkpoint')
