"""train.py: bad configs fail at start in one line (exit 2, a user error); so
does an image nothing decodes, when it comes; NaN stops the run (2 as well:
running it again would do the same);
fine-tuning from a timm .pth to another size and class count."""
import os

import numpy as np
import pytest

from eval_helpers import photo_folder
from train_helpers import ROOT, metric_rows, run, tiny_args


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  return photo_folder(str(tmp_path_factory.mktemp('cli') / 'data'), counts=(4, 4, 4))


@pytest.mark.parametrize('override, devices, message', [
    ({'batch_sise': 8}, 1, "unknown config key 'batch_sise'"),
    ({'batch_size': 6}, 4, 'batch_size=6 is not divisible by the 4 devices'),
    ({'dataset': 'folder:/nonexistent/train'}, 1, "folder dataset '/nonexistent/train' does "
     'not exist'),
    ({'dataset': 'tfds:imagenet2012:train', 'data_dir': '/nonexistent'}, 1,
     'ILSVRC2012_img_train.tar'),
    ({'optimizer': 'lamb'}, 1, "optimizer must be 'sgd' or 'adamw'"),
    ({'model': 'vit_nope'}, 1, "unknown model 'vit_nope'"),
])
def test_bad_config_fails_at_start_in_one_line(tmp_path, data, override, devices, message):
  args = tiny_args(tmp_path / 'w', data)
  if 'batch_sise' in override:
    args.append('--config.batch_sise=8')
  else:
    args = [a for a in args if not any(a.startswith(f'--config.{k}=') for k in override)]
    args += [f'--config.{k}={v}' for k, v in override.items()]
  out, err = run(args, devices=devices, expect=2)
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], err[-2000:]
  assert 'Traceback' not in err


@pytest.mark.parametrize('processes', [False, True])
def test_an_image_nothing_decodes_stops_the_run_in_one_line(tmp_path, processes):
  broken = photo_folder(str(tmp_path / 'data'), counts=(3, 2, 2), corrupt=True)
  work = tmp_path / 'w'
  out, err = run(tiny_args(work, broken, worker_processes=processes), devices=1, expect=2)
  lines = err.strip().splitlines()
  assert len(lines) == 1, err[-2000:]
  assert lines[0].startswith(f'error: training image {os.path.join("class_1", "broken.jpg")} '
                             f'of folder:{broken} cannot be decoded (')
  assert lines[0].endswith('); remove or replace it')
  assert not (work / 'checkpoints').exists() or not os.listdir(work / 'checkpoints')


def test_non_finite_loss_stops_naming_the_step_without_a_bad_checkpoint(tmp_path, data):
  work = tmp_path / 'nan'
  out, err = run(tiny_args(work, data, lr=1e30, checkpoint_every=1, log_every=1), expect=2)
  assert 'non-finite loss or gradients at step' in err and 'Traceback' not in err
  bad = int(err.split('non-finite loss or gradients at step ')[1].split(';')[0])
  checkpoints = work / 'checkpoints'
  saved = [int(s) for s in os.listdir(checkpoints)] if checkpoints.exists() else []
  assert all(s < bad for s in saved)
  assert all(np.isfinite(r['loss']) for r in metric_rows(work) if r['step'] < bad)


def test_finetune_from_a_timm_pth_to_a_new_size_and_head(tmp_path, data):
  pth = os.path.join(ROOT, 'tests', 'fixtures', 'timm', 'vit_base_patch16_224.pth')
  twin = ("{'hidden_size': 64, 'num_layers': 2, 'num_heads': 4, 'mlp_dim': 256, "
          "'num_classes': 3}")
  work = tmp_path / 'ft'
  out, _ = run(tiny_args(work, data, model='vit_base_patch16_224', model_overrides=twin,
                         pretrained=pth, image_size=96, total_steps=10, lr=0.03,
                         crop_scale='(0.9, 1.0)', checkpoint_every=10))
  assert 'resampled (bilinear) from a 4x4 to a 6x6' in out and 're-initialised' in out
  from vit_jax.checkpoints import load_params
  cfg, params = load_params(str(work))
  assert cfg.image_size == 96 and cfg.num_classes == 3
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, 37, 64)
  losses = [r['loss'] for r in metric_rows(work)]
  assert np.mean(losses[-3:]) < np.mean(losses[:3])
