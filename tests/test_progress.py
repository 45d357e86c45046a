"""Progress: plain lines per log interval into a file, tqdm's bar on a terminal."""
import io

from vit_jax.progress import Progress


class Terminal(io.StringIO):
  def isatty(self):
    return True


def test_a_file_gets_one_plain_line_per_log_interval():
  out = io.StringIO()
  bar = Progress(10, 'train', stream=out, start_step=4)
  for step in range(5, 11):
    bar.update(8)
    if step % 3 == 0:
      bar.log(step, loss=0.123456)
  bar.close()
  lines = out.getvalue().splitlines()
  assert [line.split()[:4] for line in lines] == [['train', '6/10', 'loss', '0.1235'],
                                                   ['train', '9/10', 'loss', '0.1235']]
  assert all(' img/s  ETA ' in line for line in lines) and '\r' not in out.getvalue()


def test_each_line_rates_its_own_interval(monkeypatch):
  """A slow first step (the compile) weighs on the first line only."""
  clock = iter([0.0, 10.0, 12.0])  # start, the first line, the second
  monkeypatch.setattr('vit_jax.progress.time.perf_counter', lambda: next(clock))
  out = io.StringIO()
  bar = Progress(8, 'train', stream=out)
  for step in (1, 2, 3, 4):
    bar.update(16)
    if step % 2 == 0:
      bar.log(step)
  lines = out.getvalue().splitlines()
  assert lines == ['train 2/8  3.2 img/s  ETA 00:30', 'train 4/8  16.0 img/s  ETA 00:04']


def test_a_terminal_gets_an_in_place_bar():
  out = Terminal()
  bar = Progress(4, 'eval', stream=out)
  for _ in range(4):
    bar.update(2)
  bar.log(4, top1=0.5)
  bar.close()
  text = out.getvalue()
  assert '\r' in text and 'eval' in text and '4/4' in text and 'top1 0.5' in text


def test_disabled_writes_nothing():
  out = Terminal()
  bar = Progress(3, 'eval', enabled=False, stream=out)
  bar.update(1)
  bar.log(1, top1=1.0)
  bar.close()
  assert out.getvalue() == ''


def test_a_note_is_a_line_of_its_own_between_the_progress_lines():
  out = io.StringIO()
  bar = Progress(4, 'train', stream=out)
  bar.update(8)
  bar.log(1, loss=1.0)
  bar.note('input-bound: raise --config.workers')
  bar.update(8)
  bar.log(2, loss=1.0)
  lines = out.getvalue().splitlines()
  assert [line.split()[:2] for line in lines] == [['train', '1/4'],
                                                   ['input-bound:', 'raise'], ['train', '2/4']]

  terminal = Terminal()
  bar = Progress(4, 'train', stream=terminal)
  bar.update(8)
  bar.note('input-bound: raise --config.workers')
  bar.close()
  # the bar is cleared, the line written, the bar drawn again below it
  text = terminal.getvalue()
  assert '\rinput-bound: raise --config.workers\n' in text
  assert text.index('input-bound') < text.rindex('1/4')
  quiet = Terminal()
  Progress(4, 'train', enabled=False, stream=quiet).note('input-bound')
  assert quiet.getvalue() == ''
