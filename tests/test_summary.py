"""What a run says first, and the config a workdir keeps."""
import json

import jax
import ml_collections
import numpy as np

import vit_jax
from vit_jax import parallel, summary
from vit_jax.workdir import Workdir


def _config(**kw):
  c = ml_collections.ConfigDict(dict(model='vit_base_patch16_224', lr=0.1, batch_size=8,
                                     model_overrides={'num_classes': 10}))
  c.update(kw)
  return c


def test_the_start_up_lines_say_devices_batch_and_parameters():
  cfg = vit_jax.get_model_config('vit_base_patch16_224')
  params = {'a': np.zeros((3, 4)), 'b': {'c': np.zeros(5)}}
  mesh = parallel.make_mesh()
  lines = summary.startup_lines('training', _config(), cfg, mesh, params, 8)
  assert lines[0] == 'vit-jax training, config:' and '  lr: 0.1' in lines
  text = '\n'.join(lines)
  n = jax.device_count()
  assert f'platform cpu: {n} device' in text and 'mesh data=' in text
  assert f'batch: global 8, per host 8, per device {8 // n}' in text
  assert 'model vit_base_patch16_224: 17 parameters' in text and 'compiles' in lines[-1]
  assert 'versions: jax ' + jax.__version__ in text


def test_the_workdir_keeps_the_config_and_a_resume_names_what_changed(tmp_path):
  assert summary.keep_config(_config(), Workdir.at(tmp_path)) is None
  kept = json.loads((tmp_path / 'config.json').read_text())
  assert kept == {'model': 'vit_base_patch16_224', 'lr': 0.1, 'batch_size': 8,
                  'model_overrides': {'num_classes': 10}}
  assert summary.keep_config(_config(), Workdir.at(tmp_path)) == []
  changed = summary.keep_config(_config(lr=0.2, model_overrides={'num_classes': 5}),
                                Workdir.at(tmp_path))
  assert changed == ['lr (0.1 -> 0.2)', 'model_overrides.num_classes (10 -> 5)']
