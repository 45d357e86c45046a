"""Recipes by name from an installed package, and model config fields set
from the command line.

`--config` takes a file path as ml_collections does, and also what an
installed package can offer wherever it runs: a recipe name (`quickstart`,
`card:vit_base_patch16_224`), its module (`configs.card`) or the checkout's
path to it (`configs/card.py`), found in the installed `configs` package.
`--config.model_overrides.KEY=VALUE` sets any field of the model config,
whether the recipe's dict has the key or not.
"""
from __future__ import annotations

import ast
import importlib.util
import os
from typing import Any, Optional

OVERRIDE = '--config.model_overrides.'


def resolve(spec: str) -> str:
  """`spec` (PATH[:ARG]) with PATH made a file path where it names a recipe."""
  path, sep, arg = spec.partition(':')
  if os.path.isfile(path):
    return spec
  name = os.path.basename(path)
  name = name[:-3] if name.endswith('.py') else name.split('.')[-1]
  found = importlib.util.find_spec('configs')
  for folder in (found.submodule_search_locations or []) if found else []:
    candidate = os.path.join(folder, f'{name}.py')
    if os.path.isfile(candidate) and name not in ('__init__', 'common'):
      return candidate + sep + arg
  return spec  # ml_collections names the missing file


def choices() -> list[str]:
  """The recipe names of the installed `configs` package."""
  found = importlib.util.find_spec('configs')
  names = set()
  for folder in (found.submodule_search_locations or []) if found else []:
    names.update(f[:-3] for f in os.listdir(folder)
                 if f.endswith('.py') and f[:-3] not in ('__init__', 'common'))
  return sorted(names)


def missing(spec: str) -> Optional[str]:
  """The message for a `--config` that is neither a file nor a recipe, naming
  the recipes; None when it is one."""
  path = spec.partition(':')[0]
  if os.path.isfile(path):
    return None
  return (f'no recipe or config file {path!r}; recipes: {", ".join(choices())} '
          '(--config=NAME[:ARG], or the path of a config file)')


def rewrite_argv(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """(argv with --config resolved and the model overrides taken out,
  [(field, raw value)] of those overrides)."""
  out, overrides = [], []
  it = iter(argv)
  for arg in it:
    if arg.startswith('--config='):
      out.append('--config=' + resolve(arg[len('--config='):]))
    elif arg == '--config':
      out += [arg, resolve(next(it, ''))]
    elif arg.startswith(OVERRIDE) and '=' in arg:
      key, _, value = arg[len(OVERRIDE):].partition('=')
      overrides.append((key, value))
    else:
      out.append(arg)
  return out, overrides


def parse_value(raw: str) -> Any:
  """A Python literal (numbers, booleans, tuples, None), else the string."""
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return {'true': True, 'false': False}.get(raw.lower(), raw)


def apply_overrides(config: Any, overrides: list[tuple[str, str]]) -> None:
  """Set each field in `config.model_overrides`; a field no model config has
  is a ValueError naming it and the fields there are."""
  if not overrides:
    return
  from vit_jax.models import registry
  fields = registry.config_fields()
  for key, raw in overrides:
    if key not in fields:
      raise ValueError(f'--config.model_overrides.{key}: the model config has no field {key!r}; '
                       f'fields are: {", ".join(f for f in fields if f != "name")}')
    with config.unlocked():
      config.model_overrides = {**config.model_overrides, key: parse_value(raw)}
