"""What the launcher adds to a command: the multi-host flags, for our own
training and evaluation commands (any other command runs as given), and the
job's default name."""
from __future__ import annotations

import os
import re
import time
from typing import Sequence

OURS = ('train.py', 'eval.py', 'vit-jax-train', 'vit-jax-eval')
OUR_MODULES = ('vit_jax.cli.train', 'vit_jax.cli.eval')


def is_ours(command: Sequence[str]) -> bool:
  """`python train.py ...`, `vit-jax-eval ...`, `python -m vit_jax.cli.train ...`."""
  head = list(command[:3])
  return (any(os.path.basename(a) in OURS for a in head)
          or any(a == '-m' and b in OUR_MODULES for a, b in zip(head, head[1:])))


def with_flags(command: Sequence[str], flags: Sequence[str]) -> list[str]:
  """`command` with the multi-host `flags` where it is ours and sets none of
  them itself."""
  if not is_ours(command):
    return list(command)
  keys = {f.split('=', 1)[0] for f in flags}
  if any(a.split('=', 1)[0] in keys for a in command):
    return list(command)
  return [*command, *flags]


def default_name(command: Sequence[str]) -> str:
  """The last part of the command's workdir (`--workdir`, `--config.workdir`),
  else `job-` and the time."""
  for arg in command:
    key, _, value = arg.partition('=')
    if key in ('--workdir', '--config.workdir') and value.rstrip('/'):
      return valid_name(os.path.basename(value.rstrip('/')))
  return time.strftime('job-%Y%m%d-%H%M%S')


def valid_name(name: str) -> str:
  return re.sub(r'[^A-Za-z0-9._-]', '-', name).strip('.-') or 'job'
