"""load_params / save_params: reference parity, exact round trips, adaptation."""
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

import vit_jax
from vit_jax.models import registry
from vit_jax.checkpoints import CheckpointError, load_params, orbax_io, save_params
from vit_jax.checkpoints.adapt import resample_posemb
from vit_jax.checkpoints.formats import _read_file
from conftest import CARD_MODELS, GOOGLE_TWINS, data_path, google_twin, jit_apply, timm_twin


def _outputs(cfg, params, x):
  """(logits, pre-logits features) of a config's model."""
  logits = jax.jit(registry.module_from_config(cfg).apply)({'params': params}, x)
  headless = vit_jax.get_model_config(cfg.name, **{**_fields(cfg), 'num_classes': 0})
  feats = jax.jit(registry.module_from_config(headless).apply)(
      {'params': {k: v for k, v in params.items() if k != 'head'}}, x)
  return np.asarray(logits), np.asarray(feats)


def _fields(cfg):
  return {k: v for k, v in cfg.to_dict().items() if k != 'name'}


def _flat(params):
  return traverse_util.flatten_dict(params, sep='/')


@pytest.mark.parametrize('ext', ['pth', 'safetensors'])
@pytest.mark.parametrize('name', CARD_MODELS)
def test_timm_twin_logits_and_pre_logits(name, ext):
  overrides, io = timm_twin(name)
  cfg, params = load_params(data_path('timm', f'{name}.{ext}'), name, **overrides)
  logits, feats = _outputs(cfg, params, io['input_nhwc'])
  np.testing.assert_allclose(logits, io['logits'], rtol=0, atol=1e-4)
  np.testing.assert_allclose(feats, io['pre_logits'], rtol=0, atol=1e-4)


@pytest.mark.parametrize('twin', sorted(GOOGLE_TWINS))
def test_google_twin_logits_and_pre_logits(twin):
  overrides, io = google_twin(twin)
  cfg, params = load_params(data_path('google', f'{twin}.npz'), GOOGLE_TWINS[twin], **overrides)
  assert cfg.gelu_approximate  # the official code's tanh GELU
  logits, feats = _outputs(cfg, params, io['input_nhwc'])
  np.testing.assert_allclose(logits, io['logits'], rtol=0, atol=1e-5)
  # the fixture captured the `pre_logits` module's output: the Dense before tanh
  ref = np.tanh(io['pre_logits']) if cfg.representation_size else io['pre_logits']
  np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize('ext', ['pth', 'safetensors'])
@pytest.mark.parametrize('name', ['vit_small_patch16_224', 'vit_base_patch16_224',
                                  'vit_base_resnet50_384'])
def test_timm_to_ours_to_timm_is_bit_exact(tmp_path, name, ext):
  overrides, _ = timm_twin(name)
  src = data_path('timm', f'{name}.{ext}')
  cfg, params = load_params(src, name, **overrides)
  out = str(tmp_path / f'out.{ext}')
  save_params(out, params, cfg)
  original, _ = _read_file(src, 'torch' if ext == 'pth' else ext)
  written, _ = _read_file(out, 'torch' if ext == 'pth' else ext)
  assert list(written) == list(original)  # the same keys, in timm's order
  for k, v in original.items():
    # the card's vit_small stores a 2-D patch embedding; we write timm's conv layout
    np.testing.assert_array_equal(written[k].reshape(v.shape), v, err_msg=k)
    assert written[k].dtype == v.dtype


@pytest.mark.parametrize('twin', sorted(GOOGLE_TWINS))
def test_npz_to_ours_to_npz_is_bit_exact(tmp_path, twin):
  overrides, _ = google_twin(twin)
  cfg, params = load_params(data_path('google', f'{twin}.npz'), GOOGLE_TWINS[twin], **overrides)
  out = str(tmp_path / 'out.npz')
  save_params(out, params, cfg)
  original, written = np.load(data_path('google', f'{twin}.npz')), np.load(out)
  assert sorted(written.files) == sorted(original.files)  # pre-Linen names, (1,1,1,C) GN
  for k in original.files:
    np.testing.assert_array_equal(written[k], original[k], err_msg=k)
    assert written[k].shape == original[k].shape


@pytest.mark.parametrize('name', ['vit_base_patch16_224', 'vit_base_resnet50_384'])
def test_ours_to_orbax_to_ours_is_bit_exact_and_self_describing(tmp_path, name):
  overrides, io = timm_twin(name)
  cfg, params = load_params(data_path('timm', f'{name}.pth'), name, **overrides)
  save_params(str(tmp_path / 'ckpt'), params, cfg)
  cfg2, params2 = load_params(str(tmp_path / 'ckpt'))  # no model name needed
  assert cfg2.to_dict() == cfg.to_dict()
  a, b = _flat(params), _flat(params2)
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]), err_msg=k)
  # safetensors we write also carries the model description
  save_params(str(tmp_path / 'x.safetensors'), params, cfg)
  cfg3, _ = load_params(str(tmp_path / 'x.safetensors'))
  assert cfg3.to_dict() == cfg.to_dict()


class _NoCopy(np.ndarray):
  def __deepcopy__(self, memo):
    raise AssertionError('orbax copied a leaf')


def test_orbax_write_does_not_copy_the_arrays(tmp_path):
  """Leaves loaded from a .pth are read-only views of the memory-mapped file;
  a copy of each while saving doubled a conversion's peak memory."""
  overrides, _ = timm_twin('vit_base_patch16_224')
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', **overrides)
  assert not any(a.flags.writeable for a in jax.tree.leaves(params))  # mapped, not copied
  orbax_io.write(str(tmp_path / 'ckpt'), jax.tree.map(lambda a: a.view(_NoCopy), params), cfg)
  record, back = orbax_io.read(str(tmp_path / 'ckpt'))
  assert record['model'] == cfg.name
  a, b = _flat(params), _flat(back)
  assert set(a) == set(b)
  for k in a:
    assert b[k].dtype == a[k].dtype
    np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_orbax_write_flushes_data_in_bounded_files(tmp_path):
  """OCDBT holds a data file in memory until it is written: a 2 GiB default
  kept a whole checkpoint's encoded data resident."""
  leaf = 4 << 20
  params = {f'w{i}': np.random.default_rng(i).standard_normal(leaf // 4, np.float32)
            for i in range(20)}
  orbax_io.write(str(tmp_path / 'ckpt'), params, vit_jax.get_model_config('vit_tiny_patch16_224'))
  data = tmp_path / 'ckpt' / 'params' / 'ocdbt.process_0' / 'd'
  sizes = [f.stat().st_size for f in data.iterdir()]
  assert max(sizes) <= orbax_io.DATA_FILE_BYTES + leaf  # one array may overshoot
  _, back = orbax_io.read(str(tmp_path / 'ckpt'))
  np.testing.assert_array_equal(back['w19'], params['w19'])


def test_training_workdir_loads_its_latest_complete_checkpoint(tmp_path):
  import orbax.checkpoint as ocp
  from vit_jax.checkpoints.orbax_io import model_record
  overrides, _ = timm_twin('vit_base_patch16_224')
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', **overrides)
  later = jax.tree.map(lambda a: a + 1.0, params)
  mngr = ocp.CheckpointManager(str(tmp_path / 'checkpoints'))
  for step, p in ((10, params), (20, later)):
    mngr.save(step, args=ocp.args.Composite(params=ocp.args.StandardSave(p),
                                            model=ocp.args.JsonSave(model_record(cfg)),
                                            opt=ocp.args.StandardSave({'mu': p})))
  mngr.wait_until_finished()
  os.makedirs(tmp_path / 'checkpoints' / '30.orbax-checkpoint-tmp-123')  # an unfinished save
  _, got = load_params(str(tmp_path))
  np.testing.assert_array_equal(got['head']['bias'], np.asarray(later['head']['bias']))


def test_scan_layers_params_are_stored_in_the_release_layout(tmp_path):
  """A scan_layers model's stacked blocks are written as encoderblock_N (every
  format), and load back stacked or not, as the config asks."""
  import orbax.checkpoint as ocp
  from vit_jax.checkpoints import scan_layout
  from vit_jax.checkpoints.orbax_io import model_record
  overrides, io = timm_twin('vit_base_patch16_224')
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', scan_layers=True, **overrides)
  assert scan_layout.is_stacked(params)
  np.testing.assert_allclose(_outputs(cfg, params, io['input_nhwc'])[0], io['logits'], atol=1e-4)
  save_params(str(tmp_path / 'w.npz'), params, cfg)
  with np.load(tmp_path / 'w.npz') as z:
    assert 'Transformer/encoderblock_0/LayerNorm_0/scale' in z.files
  plain_cfg, plain = load_params(str(tmp_path / 'w.npz'), 'vit_base_patch16_224', **overrides)
  np.testing.assert_allclose(_outputs(plain_cfg, plain, io['input_nhwc'])[0], io['logits'],
                             atol=1e-4)
  # a scan_layers training run checkpoints its stacked state; load_params reads it either way
  mngr = ocp.CheckpointManager(str(tmp_path / 'run' / 'checkpoints'))
  mngr.save(5, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                       model=ocp.args.JsonSave(model_record(cfg))))
  mngr.wait_until_finished()
  cfg2, stacked = load_params(str(tmp_path / 'run'))
  assert cfg2.scan_layers and scan_layout.is_stacked(stacked)
  _, unstacked = load_params(str(tmp_path / 'run'), scan_layers=False)
  a, b = _flat(plain), _flat(unstacked)
  assert set(a) == set(b)
  for k in a:
    np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_new_head_and_resolution_on_load():
  overrides, io = timm_twin('vit_base_patch16_224')
  msgs = []
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', log=msgs.append,
                            **{**overrides, 'num_classes': 3, 'image_size': 96})
  assert params['head']['kernel'].shape == (64, 3) and not params['head']['kernel'].any()
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, 37, 64)
  assert any('re-initialised' in m for m in msgs) and any('resampled' in m for m in msgs)
  out = jit_apply(registry.module_from_config(cfg), {'params': params}, np.zeros((1, 96, 96, 3)))
  assert out.shape == (1, 3)
  _, headless = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', log=msgs.append,
                            **{**overrides, 'num_classes': 0})
  assert 'head' not in headless


def test_position_embeddings_resample_like_the_official_code():
  """The official code: scipy.ndimage.zoom(order=1) on the grid, class token aside."""
  from scipy import ndimage
  rs = np.random.RandomState(0)
  posemb = rs.randn(1, 1 + 7 * 7, 5).astype(np.float32)
  new = resample_posemb(posemb, 12, num_prefix=1)
  ref = ndimage.zoom(posemb[0, 1:].reshape(7, 7, 5), (12 / 7, 12 / 7, 1), order=1)
  np.testing.assert_array_equal(new[:, :1], posemb[:, :1])
  np.testing.assert_allclose(new[0, 1:].reshape(12, 12, 5), ref, atol=1e-5)
  np.testing.assert_allclose(resample_posemb(posemb, 7, 1), posemb, atol=1e-6)


def test_registered_weights_file_name_names_the_model(tmp_path):
  overrides, _ = timm_twin('vit_base_patch16_224')
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', **overrides)
  path = str(tmp_path / 'jx_vit_base_p16_224-80ecf9dd.pth')
  save_params(path, params, cfg)
  cfg2, _ = load_params(path, **overrides)
  assert cfg2.name == 'vit_base_patch16_224'


def test_mismatches_are_named():
  overrides, _ = timm_twin('vit_base_patch16_224')
  path = data_path('timm', 'vit_base_patch16_224.pth')
  with pytest.raises(CheckpointError, match=r'missing keys blocks\.2\..*check --model'):
    load_params(path, 'vit_base_patch16_224', **{**overrides, 'num_layers': 3})
  with pytest.raises(CheckpointError, match=r'unexpected keys blocks\.1\.'):
    load_params(path, 'vit_base_patch16_224', **{**overrides, 'num_layers': 1})
  with pytest.raises(CheckpointError, match=r'shape mismatch for .*Dense_0.*\(256,\).*\(128,\)'):
    load_params(path, 'vit_base_patch16_224', **{**overrides, 'mlp_dim': 128})
  with pytest.raises(CheckpointError, match='does not name its architecture'):
    load_params(path)
  with pytest.raises(ValueError, match="unknown model 'vit_base'"):
    load_params(path, 'vit_base')
  with pytest.raises(CheckpointError, match='no such file'):
    load_params('/nonexistent/x.npz', 'vit_base_patch16_224')
  with pytest.raises(CheckpointError, match='unknown checkpoint format'):
    load_params(path + '.tar.gz', 'vit_base_patch16_224')
