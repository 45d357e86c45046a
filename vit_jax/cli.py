"""Entry-point plumbing shared by eval.py and train.py: one-line errors.

ml_collections applies `--config.KEY=VALUE` overrides both while the flag is
defined and while absl parses the command line, and defers errors of the
config file itself to first use; each of these becomes one line and exit
code 2 here instead of a traceback.
"""
from __future__ import annotations

import re
import sys
from typing import NoReturn

from absl import flags
from ml_collections import config_flags


def fail(message: str, code: int = 1) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _override_error(e: Exception) -> NoReturn:
  """An unknown key of a locked config, with ml_collections' suggestion."""
  text = str(e).replace('\\n', ' ').replace("\\'", "'")
  key = re.search(r"'([A-Za-z_][\w.]*)'", text)
  hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', text)
  message = f'unknown config key {key.group(1)!r}' if key else ' '.join(text.split())
  fail(f'bad --config override: {message}' + (f' ({hint.group(0)})' if hint else ''), 2)


def one_line(text: str) -> str:
  """The gist of a possibly multi-line message: the last exception line of an
  embedded traceback (a config file's get_config failing), else all lines."""
  raised = re.findall(r'^\s*\w*(?:Error|Exception): (.+)$', text, re.M)
  if 'Traceback' in text and raised:
    return raised[-1].strip()
  errno = re.findall(r'\[Errno \d+\] .+$', text, re.M)  # a config file that is not there
  if errno:
    return errno[-1].strip()
  return ' '.join(line.strip() for line in text.splitlines() if line.strip())


def define_config(default: str, help_text: str):
  """`--config` with `--config.KEY=VALUE` overrides on a locked config."""
  try:
    return config_flags.DEFINE_config_file('config', default, help_text, lock_config=True)
  except (KeyError, AttributeError, ValueError, TypeError) as e:
    _override_error(e)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser for `app.run(main, flags_parser=parse_flags)`."""
  try:
    return flags.FLAGS(argv)
  except (KeyError, AttributeError) as e:
    _override_error(e)
  except (flags.Error, ValueError, TypeError) as e:
    fail(f'bad flag: {one_line(str(e))}', 2)


def load_config(holder):
  """The config value; a config file that failed to load raises on first use."""
  try:
    config = holder.value
    config.get('model')
    return config
  except Exception as e:  # noqa: BLE001 -- ml_collections defers load errors to here
    fail(f'bad --config: {one_line(str(e))}', 2)
