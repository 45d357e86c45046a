"""Entry-point plumbing shared by eval.py and train.py: one-line errors."""
from __future__ import annotations

import re
import sys
from typing import NoReturn

from ml_collections import config_flags


def fail(message: str, code: int = 1) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def define_config(default: str, help_text: str):
  """`--config` with `--config.KEY=VALUE` overrides on a locked config.

  ml_collections applies the overrides while defining the flag, so a typo
  surfaces here; it becomes one line instead of a traceback.
  """
  try:
    return config_flags.DEFINE_config_file('config', default, help_text, lock_config=True)
  except (KeyError, AttributeError, ValueError, TypeError) as e:
    text = str(e).replace('\\n', ' ').replace("\\'", "'")
    key = re.search(r"'([A-Za-z_][\w.]*)'", text)
    hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', text)
    message = f'unknown config key {key.group(1)!r}' if key else ' '.join(text.split())
    fail(f'bad --config override: {message}' + (f' ({hint.group(0)})' if hint else ''), 2)
