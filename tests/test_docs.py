"""The commands shown in README.md and docs/*.md, checked against the programs.

Every command of an `sh` block, and every inline code span that starts with
a program, is split as the shell splits it (continued lines joined) and
checked: its program exists; each flag is one the program's `--help` lists
(one `--help` per program, each in a process of its own); the
`--config.KEY=VALUE` flags of train.py and eval.py parse into the recipe the
command names as ml_collections parses them there, and each
`--config.model_overrides.FIELD` is a model config field; a value of a flag
with choices is one of them; a model named is registered. A command with
placeholders (`NAME`, `[--flag]`, `...`) has its flag names checked, not its
values. Programs that are not ours are in SKIPPED, with the reason. Some
commands run for real, in a cheap form: `--list-models`, and the plan
command with a one-block model.
"""
import ast
import functools
import glob
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from typing import NamedTuple, Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(os.path.relpath(p, ROOT)
                               for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))

# the installed commands, as the checkout runs them
SCRIPTS = {'vit-jax-train': 'train.py', 'vit-jax-eval': 'eval.py',
           'vit-jax-convert': 'convert', 'vit-jax-predict': 'predict.py',
           'vit-jax-launch': 'vit_jax.launch'}
# absl programs (their --config: the default recipe) and argparse programs
ABSL = {'train.py': 'configs/quickstart.py', 'eval.py': 'configs/eval.py'}
ARGPARSE = ('predict.py', 'convert', 'vit_jax.bench', 'vit_jax.launch')
LAUNCH_VERBS = ('status', 'logs', 'stop')
# flags naming a registered model, per program
MODEL_FLAGS = {'convert': '--model', 'predict.py': '--model', 'vit_jax.bench': '--model'}
# the docs show these; they are not ours, so they are not run here
SKIPPED = {
    'gcloud': 'the Google Cloud CLI (a TPU slice, a bucket): tests/launch check the calls the '
              'launcher makes against a stand-in',
    'tfds': "TensorFlow Datasets' CLI: needs tensorflow, and ImageNet's archives",
    'pip': 'installs packages (the setup line itself is checked against .ci/run)',
    'huggingface-cli': 'downloads from the Hugging Face Hub',
    'bash': 'a shell command run on the workers (the gcsfuse mount)',
}
# an all-capitals word (NAME, DIR, HOST0:PORT), an optional part, an ellipsis, a variable
PLACEHOLDER = re.compile(r'(?:^|[=:/,\s])[A-Z][A-Z0-9_]*(?=$|[=:,\s\]])|\[|\.\.\.|\$')


class Command(NamedTuple):
  page: str
  line: int
  text: str

  @property
  def argv(self) -> list[str]:
    return shlex.split(self.text, comments=True)

  @property
  def template(self) -> bool:
    """Placeholders, or a config key named without a value (`eval.py
    --config.checkpoint`): a mention of the flags, not a command to run."""
    bare = any(a.startswith('--config.') and '=' not in a for a in self.argv)
    return bare or bool(PLACEHOLDER.search(' '.join(self.argv)))  # comments dropped


def read(page: str) -> str:
  with open(os.path.join(ROOT, page)) as f:
    return f.read()


FENCE = re.compile(r'^```(\w*)\n(.*?)^```$', re.M | re.S)


def blocks(page: str, language: str) -> list[tuple[int, str]]:
  """(line, text) of each fenced block in `language`."""
  text = read(page)
  return [(text.count('\n', 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text)
          if m.group(1) == language]


def prose(page: str) -> str:
  """The page without its fenced blocks (blanked, so lines keep their numbers)."""
  return FENCE.sub(lambda m: '\n' * m.group(0).count('\n'), read(page))


def program_words() -> set[str]:
  return set(SCRIPTS) | set(SKIPPED) | set(ABSL) | {'predict.py', 'python', 'python3'}


def commands() -> list[Command]:
  """Every command shown: the lines of `sh` blocks (comments dropped, a line
  ending in a backslash joined to the next) and inline code that starts with
  a program."""
  out = []
  for page in PAGES:
    for start, body in blocks(page, 'sh'):
      pending, first = '', None
      for i, line in enumerate(body.splitlines()):
        if not pending and not line.split('#')[0].strip():
          continue
        first = start + i if not pending else first
        if line.endswith('\\'):
          pending += line[:-1]
          continue
        out.append(Command(page, first, ' '.join((pending + line).split())))
        pending = ''
    text = prose(page)
    for m in re.finditer(r'`([^`]+)`', text):
      span = ' '.join(m.group(1).split())
      if span.split(' ')[0] in program_words():
        out.append(Command(page, text.count('\n', 0, m.start()) + 1, span))
  return out


COMMANDS = commands()


def ci_lines() -> list[str]:
  return [line.strip() for line in read('.ci/run').splitlines()]


def program_of(argv: list[str]) -> tuple[str, list[str]]:
  """(the program, its arguments): `python -m convert` and `vit-jax-convert`
  are `convert`, `python train.py` and `vit-jax-train` are `train.py`."""
  head = argv[0]
  if head in SCRIPTS:
    return SCRIPTS[head], argv[1:]
  if head in ('python', 'python3'):
    return (argv[2], argv[3:]) if argv[1] == '-m' else (argv[1], argv[2:])
  return head, argv[1:]


# --- what each program accepts ---------------------------------------------

@functools.lru_cache(maxsize=None)
def help_text(program: str, verb: Optional[str] = None) -> str:
  """The program's own --help (absl: --helpfull, every module's flags)."""
  argv = [program] if program.endswith('.py') else ['-m', program]
  argv += ['--helpfull'] if program in ABSL else ([verb] if verb else []) + ['--help']
  out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, f'{program} {verb or ""} --help: {out.stderr[-2000:]}'
  return out.stdout


def options(program: str, verb: Optional[str] = None) -> dict[str, Optional[set[str]]]:
  """{flag: its choices or None} from the help text."""
  text = help_text(program, verb)
  if program in ABSL:
    return {m: None for m in re.findall(r'^\s+--(?:\[no\])?([\w.-]+):', text, re.M)}
  found = {}
  for m in re.finditer(r'^  (?:-\w(?: \S+)?, )?--([\w-]+)(?: \{([^}]*)\})?', text, re.M):
    found[m.group(1)] = set(m.group(2).split(',')) if m.group(2) else None
  return found


@functools.lru_cache(maxsize=None)
def registered() -> frozenset:
  from vit_jax.models import registry
  return frozenset(registry.list_models())


@functools.lru_cache(maxsize=None)
def model_fields() -> frozenset:
  from vit_jax.models import registry
  return frozenset(registry.config_fields())


def flag_names(args: list[str]) -> list[str]:
  return [a[2:].split('=')[0] for a in args if a.startswith('--') and a != '--']


def value_of(args: list[str], flag: str) -> Optional[str]:
  for i, a in enumerate(args):
    if a == flag and i + 1 < len(args):
      return args[i + 1]
    if a.startswith(flag + '='):
      return a.split('=', 1)[1]
  return None


def recipe_config(program: str, args: list[str]):
  """The config the command line builds, parsed as train.py and eval.py parse
  it (`vit_jax.cli.define_config` and `load_config`), on flags of its own."""
  from absl import flags
  from ml_collections import config_flags
  from vit_jax.cli import recipes
  from vit_jax.train import config_keys
  argv, overrides = recipes.rewrite_argv(['prog'] + [a for a in args if a.startswith('--config')])
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file('config', recipes.resolve(ABSL[program]),
                                           flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  config = holder.value
  recipes.apply_overrides(config, overrides)
  if 'optimizer' in config:
    config_keys.check(config)
  return config


def default_recipe(program: str, args: list[str]):
  """The recipe a command with placeholders names (its argument dropped when
  that is a placeholder), with nothing overridden."""
  from vit_jax.cli import recipes
  spec = value_of(args, '--config') or ABSL[program]
  path, _, arg = recipes.resolve(spec).partition(':')
  if not os.path.isfile(path):  # configs/FILE.py[:ARG]
    path, arg = recipes.resolve(ABSL[program]), ''
  spec_module = importlib.util.spec_from_file_location('recipe', path)
  module = importlib.util.module_from_spec(spec_module)
  spec_module.loader.exec_module(module)
  return module.get_config(arg) if arg and not PLACEHOLDER.search(arg) else module.get_config()


def has_key(config, path: str) -> bool:
  head, _, rest = path.partition('.')
  if PLACEHOLDER.fullmatch(head):  # --config.KEY=VALUE
    return True
  if head == 'model_overrides' and rest:
    return bool(PLACEHOLDER.search(rest)) or rest in model_fields()
  if head not in config:
    return False
  return not rest or has_key(config[head], rest)


# --- the checks ------------------------------------------------------------

def check_absl(program: str, args: list[str], template: bool) -> None:
  accepted = options(program)
  for name in flag_names(args):
    if name != 'config' and not name.startswith('config.'):
      assert name in accepted, f'{program} has no flag --{name}'
  positional = [a for a in args if not a.startswith('--')]
  assert not positional, f'{program} takes no arguments: {positional}'
  if template:
    config = default_recipe(program, args)
    for name in flag_names(args):
      if name.startswith('config.'):
        assert has_key(config, name[len('config.'):]), f'no config key --{name}'
    return
  config = recipe_config(program, args)
  if config.get('model'):
    assert config.model in registered(), f'--config.model={config.model} is not registered'


def check_argparse(program: str, args: list[str], template: bool) -> None:
  verb = args[0] if program == 'vit_jax.launch' and args and args[0] in LAUNCH_VERBS else None
  if verb:
    args = args[1:]
  if program == 'vit_jax.launch' and '--' in args:
    inner = args[args.index('--') + 1:]
    args = args[:args.index('--')]
    check(Command('', 0, shlex.join(inner)))
  accepted = options(program, verb) if flag_names(args) or not verb else {}
  for name in flag_names(args):
    assert name in accepted, f'{program} has no flag --{name}'
    choices = accepted[name]
    value = value_of(args, f'--{name}')
    if choices and not template:
      assert value in choices, f'--{name} {value}: not one of {sorted(choices)}'
  model = value_of(args, MODEL_FLAGS[program]) if program in MODEL_FLAGS else None
  if model and not template:
    assert model in registered(), f'--model {model} is not registered'
  if program == 'convert' and not template:
    from vit_jax.cli.convert import build_parser
    try:
      build_parser().parse_args(args)  # the values' types
    except SystemExit:
      pytest.fail(f'python -m convert refuses {shlex.join(args)}')


def check_tool(program: str, args: list[str]) -> None:
  """tools/ need torch, timm, transformers or big_vision: their flags are
  checked in their source."""
  path = os.path.join(ROOT, program)
  assert os.path.isfile(path), f'no {program}'
  source = read(program)
  for name in flag_names(args):
    assert f"'--{name}'" in source, f'{program} has no flag --{name}'


def check(command: Command) -> None:
  if command.text in ci_lines():
    return  # the setup and test lines: CI runs them as written
  program, args = program_of(command.argv)
  if command.template:  # `[--flag X]`, `[--a | --b]`, `...`: the flags themselves
    args = [a.strip('[]') for a in args if a.strip('[]') not in ('', '...', '|')]
  if program in SKIPPED:
    return
  if program in ABSL:
    check_absl(program, args, command.template)
  elif program in ARGPARSE:
    check_argparse(program, args, command.template)
  elif program.startswith('tools/'):
    check_tool(program, args)
  else:
    pytest.fail(f'{command.text!r}: neither our program nor in SKIPPED')


@pytest.mark.parametrize('command', COMMANDS, ids=[f'{c.page}:{c.line}' for c in COMMANDS])
def test_command_is_one_the_program_takes(command):
  check(command)


def test_the_checks_see_the_commands():
  """Enough commands found, of every program, placeholders recognised."""
  programs = {program_of(c.argv)[0] for c in COMMANDS}
  assert set(ABSL) | set(ARGPARSE) | {'gcloud', 'tfds'} <= programs, programs
  assert len(COMMANDS) > 60
  assert Command('', 0, 'python -m convert SRC DST [--to hf]').template
  assert not Command('', 0, 'python train.py --config=configs/augreg.py:S/16,medium2').template


@pytest.mark.parametrize('text, message', [
    ('python train.py --config=configs/bv_plain.py --config.total_epoch=3', 'total_epoch'),
    ('python eval.py --config.model=vit_base_patch16_225', 'vit_base_patch16_225'),
    ('python train.py --config=quickstart --config.model_overrides.hidden=8', 'hidden'),
    ('python train.py --config=quickstart --compile-for=v3-8', 'compile-for'),
    ('python -m convert a.pth b.orbax --num-classes ten', 'ten'),
    ('python -m vit_jax.bench --mode inference', 'inference'),
    ('python tools/verify_export.py --fast', 'fast'),
    ('vit-jax-launch logs b16 --folow', 'folow'),
])
def test_a_command_the_programs_do_not_take_fails(text, message):
  with pytest.raises(BaseException, match=message) as raised:
    check(Command('', 0, text))
  assert not isinstance(raised.value, KeyboardInterrupt)


def test_setup_and_test_lines_are_the_ones_ci_runs():
  readme = [c.text for c in COMMANDS if c.page == 'README.md']
  setup = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]"'
  assert setup in readme and 'python -m pytest tests' in readme
  assert setup in ci_lines() and 'python -m pytest tests' in ci_lines()


def test_the_docs_name_the_installed_commands():
  with open(os.path.join(ROOT, 'pyproject.toml')) as f:
    scripts = re.search(r'\[project\.scripts\]\n(.*?)\n\n', f.read(), re.S).group(1)
  assert set(re.findall(r'^([\w-]+) =', scripts, re.M)) == set(SCRIPTS)


def test_readme_fits_a_screen_and_each_page_starts_from_a_command():
  assert len(read('README.md').splitlines()) <= 150
  for page in PAGES[1:]:
    text = read(page)
    first = FENCE.search(text)
    assert first and first.group(1) == 'sh' and '\n## ' not in text[:first.start()], page


def test_config_keys_named_anywhere_exist():
  from configs import common, eval as eval_config
  configs = (common.base_config(), eval_config.get_config())
  for page in PAGES:
    for key in re.findall(r'--config\.([A-Za-z_][\w.]*)', read(page)):
      key = key.rstrip('.')
      if not PLACEHOLDER.search(key):
        assert any(has_key(c, key) for c in configs), f'{page}: --config.{key}'


# our paths named in inline code: big_vision's configs share a folder's name
ABROAD = ('configs/vit_s16_i1k.py', 'configs/vit_i1k.py')


def test_paths_and_python_names_in_the_prose_exist():
  for page in PAGES:
    for span in re.findall(r'`([^`]+)`', prose(page)):
      path = span.split()[0].split(':')[0].rstrip('/')
      if re.match(r'(vit_jax|configs|tools|tests|convert|docs|\.ci)/', path):
        assert path in ABROAD or glob.glob(os.path.join(ROOT, path)), f'{page}: {span}'
      dotted = re.match(r'vit_jax(\.\w+)+', span)
      if dotted:
        resolve(dotted.group(0))


def resolve(dotted: str):
  """A module or the attribute of one, `vit_jax.data.randaugment.apply_op`."""
  parts = dotted.split('.')
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module('.'.join(parts[:i]))
    except ImportError:
      continue
    for name in parts[i:]:
      obj = getattr(obj, name)
    return obj
  raise ImportError(dotted)


def slug(heading: str) -> str:
  """GitHub's anchor of a heading."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def test_links_lead_to_pages_and_headings_that_exist():
  for page in PAGES:
    for target in re.findall(r'\]\(([^)\s]+)\)', read(page)):
      if target.startswith('http'):
        continue
      path, _, anchor = target.partition('#')
      linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
      assert os.path.exists(os.path.join(ROOT, linked)), f'{page}: {target}'
      if anchor:
        headings = re.findall(r'^#+ (.+)$', prose(linked), re.M)
        assert anchor in {slug(h) for h in headings}, f'{page}: {target}'


def test_the_exit_code_table_is_the_programs_codes():
  from vit_jax import exit_codes
  rows = re.findall(r'^\| (\d+) \| [^|]+ \| (yes|no|–) \|$', read('docs/pods.md'), re.M)
  codes = {name: value for name, value in vars(exit_codes).items() if name.isupper()}
  assert sorted(int(code) for code, _ in rows) == sorted(codes.values())
  assert [int(code) for code, retried in rows if retried == 'yes'] == [exit_codes.RESUMABLE]


def test_python_blocks_parse_and_name_what_exists():
  for page in PAGES:
    for line, body in blocks(page, 'python'):
      tree = ast.parse(body, f'{page}:{line}')
      for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == 'vit_jax':
          resolve(f'vit_jax.{node.attr}')
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
            and re.fullmatch(r'vit_[a-z0-9_]+', node.value) and node.value != 'vit_jax':
          assert node.value in registered(), f'{page}:{line}: {node.value}'


def test_list_models_prints_every_model_the_docs_tabulate(capsys):
  """`python -m convert --list-models`, run in this process."""
  from vit_jax.cli.convert import main
  assert main(['--list-models']) == 0
  printed = capsys.readouterr().out
  tabulated = set()
  for page in PAGES:
    tabulated.update(re.findall(r'^\| (vit_\w+) \|', read(page), re.M))
  assert len(tabulated) == 10
  for name in tabulated:
    assert re.search(rf'^{name}\b', printed, re.M), name


@pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                    reason='compiling for TPUs needs libtpu (the test extra has it)')
def test_the_plan_command_runs_and_reports_what_its_page_lists(tmp_path):
  """The plan page's first command as written, with a one-block model of
  width 32 on 32x32 images (a compile of seconds), in a directory of its own."""
  argv = next(c for c in COMMANDS if c.page == 'docs/plan.md').argv
  assert argv[:2] == ['python', 'train.py'] and '--plan_json=plan.json' in argv
  small = ['--config.image_size=32'] + [
      f'--config.model_overrides.{k}={v}'
      for k, v in dict(num_layers=1, hidden_size=32, num_heads=2, mlp_dim=64, patch_size=8).items()]
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *argv[2:], *small],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  plan = json.loads((tmp_path / 'plan.json').read_text())
  # the slice and batch of the card's table on that page: v3-32 (32 TensorCores), 4096
  assert (plan['topology'], plan['num_devices'], plan['batch_size'], plan['fits']) == \
      ('v3-32', 32, 4096, True)
  keys = set(plan) | set(plan['memory']) | set(plan['settings'])
  text = read('docs/plan.md')
  listed = text[text.index('## The report'):text.index('\n## ', text.index('## The report') + 1)]
  named = set()
  for span in re.findall(r'`([^`]+)`', listed):
    if not span.startswith('-'):  # --plan_json
      named.update(re.findall(r'[a-z][a-z0-9_]+', span))
  # the plan of a step that fits has no suggestion; the collectives are keyed by kind
  assert named - keys == {'suggestion', 'flags', 'kind', 'count', 'bytes'}
  assert all(set(c) == {'count', 'bytes'} for c in plan['collectives'].values())
