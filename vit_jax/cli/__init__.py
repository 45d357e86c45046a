"""The command-line programs (train, eval, predict, convert) and what they
share: recipes by name, one-line errors, the TPU plan flags.

ml_collections applies `--config.KEY=VALUE` overrides both while the flag is
defined and while absl parses the command line, and defers errors of the
config file itself to first use; each of these becomes one line and exit
code 2 here instead of a traceback.
"""
from __future__ import annotations

import re
import sys
from typing import NoReturn, Optional

from absl import flags
from ml_collections import config_flags

from vit_jax import exit_codes
from vit_jax.cli import recipes


def fail(message: str, code: int = exit_codes.CRASH) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


# what a user can fix: a bad config, flag, path or dataset (ValueError covers
# the project's own DatasetError, CheckpointError, UnknownModelError, ...)
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
               NotADirectoryError)


def fail_with(error: Exception) -> NoReturn:
  """One line for an error the run cannot go on from: exit 2 when the user can
  fix it (never worth a rerun), else 1."""
  code = exit_codes.USER_ERROR if isinstance(error, USER_ERRORS) else exit_codes.CRASH
  fail(str(error), code)


def _override_error(e: Exception) -> NoReturn:
  """An unknown key of a locked config, with ml_collections' suggestion."""
  text = str(e).replace('\\n', ' ').replace("\\'", "'")
  key = re.search(r"'([A-Za-z_][\w.]*)'", text)
  hint = re.search(r'Did you mean "[^"]+" instead of "[^"]+"\?', text)
  message = f'unknown config key {key.group(1)!r}' if key else ' '.join(text.split())
  fail(f'bad --config override: {message}' + (f' ({hint.group(0)})' if hint else ''),
       exit_codes.USER_ERROR)


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


_MODEL_OVERRIDES: list[tuple[str, str]] = []


def define_config(default: str, help_text: str):
  """`--config` with `--config.KEY=VALUE` overrides on a locked config; a
  recipe may be named as an installed package has it (`recipes.resolve`),
  and `--config.model_overrides.KEY=VALUE` sets any model config field."""
  sys.argv[:], overrides = recipes.rewrite_argv(sys.argv)
  _MODEL_OVERRIDES[:] = overrides
  try:
    return config_flags.DEFINE_config_file('config', recipes.resolve(default), help_text,
                                           lock_config=True)
  except (KeyError, AttributeError, ValueError, TypeError) as e:
    _override_error(e)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser for `app.run(main, flags_parser=parse_flags)`; --help
  exits 0 (absl's own exits 1)."""
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:
    asked = any(a in ('-h', '--help', '--helpshort', '--helpfull') for a in argv[1:])
    sys.exit(0 if asked and e.code == 1 else e.code)
  except (KeyError, AttributeError) as e:
    _override_error(e)
  except (flags.Error, ValueError, TypeError) as e:
    text = one_line(str(e))
    key = re.search(r'--config\.(\w+)=(.*?): ', text)
    if key:  # a training key's value that does not parse: say the form it takes
      from vit_jax.train.config_keys import malformed
      text = malformed(*key.groups()) or f'bad flag: {text}'
    else:
      text = f'bad flag: {text}'
    fail(text, exit_codes.USER_ERROR)


def run_absl(main, doc: str) -> None:
  """app.run with our flag parser; --help prints `doc` (absl prints the
  docstring of __main__, a console script's wrapper)."""
  from absl import app
  sys.modules['__main__'].__doc__ = doc
  app.run(main, flags_parser=parse_flags)


def define_plan_flags():
  """--compile_for and --plan_json: compile the command's step for a TPU
  slice on this machine and report it, instead of running it."""
  return (flags.DEFINE_string('compile_for', None, 'a TPU slice (e.g. v3-8, v5litepod-16): '
                              'compile the step for it, print the plan and exit'),
          flags.DEFINE_string('plan_json', None, 'with --compile_for: also write the plan '
                              'as JSON here'))


def finish_plan(plan: dict, plan_json: Optional[str]) -> NoReturn:
  """Print the plan (and write its JSON); exit 0 when the step fits, 3 when not."""
  from vit_jax.plan import report
  for line in report.lines(plan):
    print(line)
  if plan_json:
    report.write_json(plan, plan_json)
    print(f'wrote {plan_json}')
  sys.exit(exit_codes.FINISHED if plan['fits'] else exit_codes.DOES_NOT_FIT)


def load_config(holder):
  """The config value; a config file that failed to load raises on first use."""
  try:
    config = holder.value
    config.get('model')
  except Exception as e:  # noqa: BLE001 -- ml_collections defers load errors to here
    unknown = recipes.missing(config_flags.get_config_filename(flags.FLAGS[holder.name]))
    fail(f'bad --config: {unknown or one_line(str(e))}', exit_codes.USER_ERROR)
  try:
    recipes.apply_overrides(config, _MODEL_OVERRIDES)
    if 'optimizer' in config:  # a training config: its augmentation and optimizer keys
      from vit_jax.train import config_keys
      config_keys.check(config)
  except ValueError as e:
    fail(str(e), exit_codes.USER_ERROR)
  return config
