"""Training and fine-tuning of any registered Vision Transformer.

    python train.py --config=configs/FILE.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]

Started again with the same workdir, it resumes from the latest complete
checkpoint; SIGTERM saves at the next step boundary and exits 0.
"""
from __future__ import annotations

import re

from absl import app, flags, logging

from vit_jax.cli import define_config, fail

_CONFIG = define_config('configs/quickstart.py', 'training config (ml_collections file)')
_WORKDIR = flags.DEFINE_string('workdir', None, 'checkpoints, metrics.jsonl and TensorBoard')


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parse, with config errors (a mistyped `--config.KEY`, a bad value,
  a missing config file) as one line and exit code 2 instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as e:  # ml_collections: an unknown (locked) key
    text = str(e).replace('\\n', ' ').replace("\\'", "'")
    key = re.search(r"'([A-Za-z_][\w.]*)'", text)
    hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', text)
    what = f'unknown config key {key.group(1)!r}' if key else ' '.join(text.split())
    fail(f'bad --config override: {what}' + (f' ({hint.group(0)})' if hint else ''), 2)
  except (flags.Error, ValueError, TypeError) as e:
    fail(f'bad flag: {_one_line(str(e))}', 2)


def _one_line(text: str) -> str:
  """The gist of a possibly multi-line message: the last exception line of an
  embedded traceback (a config file's get_config failing), else all lines."""
  raised = re.findall(r'^\s*\w*(?:Error|Exception): (.+)$', text, re.M)
  if 'Traceback' in text and raised:
    return raised[-1].strip()
  errno = re.findall(r'\[Errno \d+\] .+$', text, re.M)  # a config file that is not there
  if errno:
    return errno[-1].strip()
  return ' '.join(line.strip() for line in text.splitlines() if line.strip())


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and jax are chatty at INFO
  try:
    config = _CONFIG.value
    config.get('model')  # a config file that failed to load raises on first use
  except Exception as e:  # noqa: BLE001 -- ml_collections defers load errors to here
    fail(f'bad --config: {_one_line(str(e))}', 2)
  if not _WORKDIR.value:
    fail('set --workdir: checkpoints and metrics go there', 2)
  from vit_jax import distributed
  from vit_jax.train.trainer import NonFiniteError, train
  try:
    distributed.initialize(config.coordinator_address, config.num_processes, config.process_id)
    train(config, _WORKDIR.value)
  except (ValueError, OSError, NonFiniteError) as e:  # config, data, checkpoint errors
    fail(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
