"""`python -m convert`: every direction, and one-line errors with no partial output."""
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from vit_jax.cli.convert import main
from vit_jax.checkpoints import CheckpointError, detect_format, load_params
from conftest import data_path, timm_twin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B16 = data_path('timm', 'vit_base_patch16_224.pth')


def _twin_args(name='vit_base_patch16_224'):
  overrides, _ = timm_twin(name)
  args = ['--model', name, '--num-classes', str(overrides.pop('num_classes'))]
  for k, v in overrides.items():
    args += ['--set', f'{k}={v}']
  return args


def _run(*args):
  return subprocess.run([sys.executable, '-m', 'convert', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_every_format_to_every_other_keeps_the_logits(tmp_path, capsys):
  overrides, io = timm_twin('vit_base_patch16_224')
  _, ref_params = load_params(B16, 'vit_base_patch16_224', **overrides)
  chain = ['ckpt', 'a.safetensors', 'b.npz', 'c.pth', 'ckpt2']
  src = B16
  for i, dst in enumerate(chain):
    extra = _twin_args() if src.endswith(('.npz', '.pth')) else []
    assert main([src, str(tmp_path / dst), *extra]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f'wrote {tmp_path / dst} (') and 'vit_base_patch16_224' in out
    src = str(tmp_path / dst)
  cfg, params = load_params(src)
  assert cfg.hidden_size == 64 and cfg.num_classes == 10
  for a, b in zip(np.asarray(params['head']['kernel']).ravel(),
                  np.asarray(ref_params['head']['kernel']).ravel()):
    assert a == b


def test_head_and_resolution_change_on_conversion(tmp_path, capsys):
  assert main([B16, str(tmp_path / 'ft'), *_twin_args(), '--num-classes', '5',
               '--set', 'image_size=128']) == 0
  err = capsys.readouterr().err
  assert 're-initialised' in err and 'resampled' in err and '8x8' in err
  cfg, params = load_params(str(tmp_path / 'ft'))
  assert cfg.num_classes == 5 and cfg.image_size == 128
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, 65, 64)


@pytest.mark.parametrize('args, message', [
    (['--model', 'vit_nope'], "unknown model 'vit_nope'"),
    (['--model', 'vit_large_patch16_224'], 'missing keys blocks.2.'),
    (['--set', 'mlp_dim=999'], 'shape mismatch for Transformer/encoderblock_0/MlpBlock_0'),
    (['--set', 'no_such_field=1'], 'unknown model config field'),
    (['--set', 'image_size'], '--set takes KEY=VALUE'),
])
def test_bad_arguments_fail_in_one_line(tmp_path, capsys, args, message):
  # a wrong --model is given alone: with the twin's --set fields any ViT would fit
  base = [] if args[0] == '--model' else _twin_args()
  rc = main([B16, str(tmp_path / 'out.npz'), *base, *args])
  err = capsys.readouterr().err.strip()
  assert rc != 0 and message in err and len(err.splitlines()) == 1, err
  assert not os.listdir(tmp_path)  # nothing partial left behind


def test_bad_files_fail_in_one_line_without_traceback(tmp_path):
  truncated = tmp_path / 'cut.pth'
  truncated.write_bytes(open(B16, 'rb').read()[:5000])
  notckpt = tmp_path / 'notes.safetensors'
  notckpt.write_text('just text')
  for src, message in ((truncated, 'cut.pth: truncated zip archive'),
                       (notckpt, 'notes.safetensors')):
    r = _run(str(src), str(tmp_path / 'out'), *_twin_args())
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert r.stderr.startswith('error: ') and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()


def test_pickled_code_is_refused_and_not_run(tmp_path):
  marker = tmp_path / 'pwned'

  class Payload:
    def __reduce__(self):
      return (os.system, (f'touch {marker}',))
  evil = tmp_path / 'evil.pth'
  with zipfile.ZipFile(evil, 'w') as zf:
    zf.writestr('archive/data.pkl', pickle.dumps({'cls_token': Payload()}, protocol=2))
  r = _run(str(evil), str(tmp_path / 'out.npz'), *_twin_args())
  assert r.returncode != 0 and 'refusing global' in r.stderr and 'Traceback' not in r.stderr
  assert not marker.exists() and not (tmp_path / 'out.npz').exists()


def test_an_orbax_suffix_names_an_orbax_directory(tmp_path, capsys):
  assert detect_format(str(tmp_path / 'b16.orbax')) == 'orbax'
  assert main([B16, str(tmp_path / 'b16.orbax'), *_twin_args()]) == 0
  assert '(orbax, model vit_base_patch16_224' in capsys.readouterr().out
  assert (tmp_path / 'b16.orbax' / 'params').is_dir()
  cfg, params = load_params(str(tmp_path / 'b16.orbax'))
  overrides, _ = timm_twin('vit_base_patch16_224')
  _, ref = load_params(B16, 'vit_base_patch16_224', **overrides)
  assert cfg.hidden_size == 64
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(CheckpointError, match=r"unknown checkpoint format '.ckpt'; .*ending in "
                                            r'\.orbax'):
    detect_format('model.ckpt')


def test_existing_destination_needs_overwrite(tmp_path, capsys):
  dst = tmp_path / 'x.npz'
  dst.write_bytes(b'keep me')
  assert main([B16, str(dst), *_twin_args()]) == 2
  assert 'exists' in capsys.readouterr().err and dst.read_bytes() == b'keep me'
  assert main([B16, str(dst), *_twin_args(), '--overwrite']) == 0
  overrides, _ = timm_twin('vit_base_patch16_224')
  _, params = load_params(B16, 'vit_base_patch16_224', **overrides)
  assert len(np.load(dst).files) == len(jax.tree.leaves(params))


def test_a_failure_while_writing_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
  def broken_write(file, state_dict, archive='archive'):
    file.write(b'PK half a file')
    raise OSError('disk full')
  monkeypatch.setattr('vit_jax.checkpoints.formats.write_pth', broken_write)
  assert main([B16, str(tmp_path / 'out.pth'), *_twin_args()]) == 2
  assert 'disk full' in capsys.readouterr().err
  assert os.listdir(tmp_path) == []


def test_help_and_model_list():
  r = _run('--help')
  assert r.returncode == 0
  for text in ('SRC', 'DST', '--model', '--num-classes', '--set', 'examples:', '.safetensors'):
    assert text in r.stdout
  r = _run('--list-models')
  assert 'vit_base_patch16_224' in r.stdout and 'jx_vit_base_p16_224-80ecf9dd.pth' in r.stdout
