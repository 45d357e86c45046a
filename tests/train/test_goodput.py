"""The goodput ledger: time booked phase after phase adds up to the wall
time; a restart after a kill counts the steps it runs again as recomputed;
goodput is the productive steps' share of every attempt's time."""
import json

from etils import epath

from vit_jax.train.goodput import PHASES, Ledger


class Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_an_attempt_books_each_phase_and_a_restart_counts_recomputed_steps(tmp_path):
  path, clock = epath.Path(tmp_path / 'goodput.jsonl'), Clock()
  first = Ledger(path, clock=clock, started=90.0)
  first.book('startup')                     # 10 s since the process started
  clock.now += 2
  first.book('compile')
  for step in range(1, 7):
    clock.now += 0.5
    first.book('input_wait')
    clock.now += 1.0
    first.book_step(step)
  first.flush()                             # then killed: this is what the file keeps
  rows = [json.loads(l) for l in path.read_text().splitlines()]
  assert [r['phase'] for r in rows] == list(PHASES) and {r['attempt'] for r in rows} == {1}
  booked = {r['phase']: (r['seconds'], r['steps']) for r in rows}
  assert booked['startup'] == (10.0, 0) and booked['compile'] == (2.0, 0)
  assert booked['input_wait'] == (3.0, 0) and booked['steps'] == (6.0, 6)
  assert sum(r['seconds'] for r in rows) == clock.now - 90.0

  second = Ledger(path, clock=clock, started=clock.now)
  assert second.attempt == 2 and second.reached_before == 6
  clock.now += 1
  second.book('restore', steps=4)           # back to the checkpoint of step 4
  for step in range(5, 9):
    clock.now += 2.0
    second.book_step(step)
  clock.now += 3
  second.book('checkpoint')
  second.flush()
  rows = [json.loads(l) for l in path.read_text().splitlines()]
  now = {r['phase']: (r['seconds'], r['steps']) for r in rows if r['attempt'] == 2}
  assert now['recomputed'] == (4.0, 2) and now['steps'] == (4.0, 2)  # 5-6 again, 7-8 new
  assert now['restore'] == (1.0, 4) and now['checkpoint'] == (3.0, 0)
  total = sum(r['seconds'] for r in rows)
  assert second.summary() == (
      f'goodput {100 * 10.0 / total:.1f}% of {total:.1f} s over 2 attempts (productive steps '
      '10.0 s; startup 10.0 s, restore 1.0 s, compile 2.0 s, input_wait 3.0 s, checkpoint '
      '3.0 s, recomputed 4.0 s (2 steps))')
  assert Ledger(path, clock=clock).reached_before == 8


def test_only_process_0_writes(tmp_path):
  path = epath.Path(tmp_path / 'goodput.jsonl')
  ledger = Ledger(path, enabled=False)
  ledger.book('startup')
  ledger.flush()
  assert not path.exists() and ledger.attempt == 1
