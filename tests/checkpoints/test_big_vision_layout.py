"""big_vision `.npz` checkpoints: read with exact parity against big_vision's
own model (twins made by tools/make_big_vision_fixtures.py), and written in
the tree big_vision's `vit.load` restores strictly."""
import functools
import json
import shutil

import ml_collections
import numpy as np
import pytest
from flax import traverse_util

import vit_jax
from vit_jax.checkpoints import CheckpointError, big_vision_layout, load_params, save_params
from vit_jax.checkpoints.formats import expected_shapes
from vit_jax.cli import convert
from vit_jax.models import registry
from conftest import data_path, jit_apply

TWINS = ('gap_sincos2d_rep', 'tok_learn', 'map_learn_rep24', 'scan_0_learn')
# what each twin's arrays say (the image size of the sin-cos one they cannot)
SAID = {'gap_sincos2d_rep': dict(classifier='gap', posemb='sincos2d', representation_size=16,
                                 num_layers=1),
        'tok_learn': dict(classifier='token', posemb='learn', representation_size=None,
                          num_layers=2),
        'map_learn_rep24': dict(classifier='map', posemb='learn', representation_size=24,
                                num_layers=2),
        'scan_0_learn': dict(classifier='gap', posemb='learn', representation_size=None,
                             num_layers=3)}
# what the user adds: the image size of sin-cos embeddings, pool '0' (which looks like gap)
ADDED = {'gap_sincos2d_rep': dict(image_size=16), 'scan_0_learn': dict(classifier='0')}


def _path(name: str) -> str:
  return data_path('big_vision', f'{name}.npz')


def _meta(name: str) -> dict:
  with open(data_path('big_vision', f'{name}.json')) as f:
    return json.load(f)


def _io(name: str) -> dict:
  return dict(np.load(data_path('big_vision', f'{name}.io.npz')))


@functools.lru_cache(maxsize=None)
def _loaded(name: str, **overrides):
  cfg, params = load_params(_path(name), **ADDED.get(name, {}), **overrides)
  return cfg, params


def _logits(cfg, params, x):
  return np.asarray(jit_apply(registry.module_from_config(cfg), {'params': params}, x))


def _assert_within(got, want, rel):
  assert np.abs(got - want).max() <= rel * np.abs(want).max()


@pytest.mark.parametrize('name', TWINS)
def test_what_the_arrays_say_is_read(name):
  cfg, _ = _loaded(name)
  fields = dict(patch_size=4, hidden_size=16, num_heads=2, mlp_dim=32, num_classes=10,
                image_size=16, posemb_class_token=False, gelu_approximate=True,
                layer_norm_eps=1e-6, source='big_vision')
  fields.update({**SAID[name], **ADDED.get(name, {})})
  assert {k: cfg[k] for k in fields} == fields
  # no registered model of this shape: big_vision's eval preprocessing
  assert (cfg.crop_mode, cfg.interpolation, cfg.crop_pct) == ('big_vision', 'area', 0.875)


@pytest.mark.parametrize('name', TWINS)
def test_logits_and_pre_logits_match_big_visions_model(name):
  """Within 1e-5 of the largest: the prefix and optimizer state (gap twin),
  a scan checkpoint's stacked blocks, read into unrolled blocks here."""
  cfg, params = _loaded(name)
  io = _io(name)
  _assert_within(_logits(cfg, params, io['input']), io['logits'], 1e-5)
  if cfg.representation_size:
    headless = ml_collections.ConfigDict({**cfg.to_dict(), 'num_classes': 0})
    features = {k: v for k, v in params.items() if k != 'head'}
    _assert_within(_logits(headless, features, io['input']), io['pre_logits'], 1e-5)


def test_a_scan_checkpoint_reads_into_a_scanned_model():
  cfg, params = _loaded('scan_0_learn', scan_layers=True)
  assert params['Transformer']['encoderblock']['LayerNorm_0']['scale'].shape == (3, 16)
  io = _io('scan_0_learn')
  _assert_within(_logits(cfg, params, io['input']), io['logits'], 1e-5)


def test_bfloat16_arrays_read_as_big_vision_reads_them():
  import ml_dtypes
  raw = dict(np.load(_path('tok_learn')))
  as_bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in raw.items()}
  void = {k: np.frombuffer(v.tobytes(), 'V2').reshape(v.shape) for k, v in as_bf16.items()}
  flat = big_vision_layout.to_ours(void)
  np.testing.assert_array_equal(flat['cls'], as_bf16['cls'].astype(np.float32))
  assert flat['Transformer/posembed_input/pos_embedding'].shape == (1, 16, 16)


def test_older_big_vision_layouts_read_the_same():
  """The Flax-optimizer era's `opt/target/` prefix beside its state, and the
  pre-2022 position embeddings under `Transformer/` (what big_vision's
  fix_old_checkpoints moves)."""
  raw = dict(np.load(_path('tok_learn')))
  old = {('opt/target/Transformer/' if k == 'pos_embedding' else 'opt/target/') + k: v
         for k, v in raw.items()}
  old['opt/state/step'] = np.array(7)
  assert big_vision_layout.is_big_vision(old)
  want = big_vision_layout.to_ours(raw)
  got = big_vision_layout.to_ours(old)
  assert sorted(got) == sorted(want)
  for k, v in want.items():
    np.testing.assert_array_equal(got[k], v)


def test_sin_cos_checkpoints_need_their_image_size_in_one_line(tmp_path, capsys):
  assert convert.main([_path('gap_sincos2d_rep'), str(tmp_path / 'out.orbax')]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count('\n') == 0 and 'does not store its image size' in err
  assert '--set image_size=' in err and not (tmp_path / 'out.orbax').exists()


@pytest.mark.parametrize('args, message', [
    (['--set', 'classifier=token'], "the arrays give classifier 'gap'"),
    (['--set', 'hidden_size=32'], 'the arrays give hidden_size 16'),
    (['--model', 'vit_base_patch16_224'], 'model vit_base_patch16_224 has 16'),
])
def test_what_contradicts_the_arrays_is_named(tmp_path, capsys, args, message):
  argv = [_path('gap_sincos2d_rep'), str(tmp_path / 'out.orbax'), '--set', 'image_size=16']
  assert convert.main(argv + args) == 2
  err = capsys.readouterr().err.strip()
  assert err.count('\n') == 0 and message in err, err


def test_a_registered_file_name_needs_no_model(tmp_path):
  """The file name says vit_s16_i1k_90ep: its preprocessing and weights URL;
  the overrides make this file's twin of it."""
  path = tmp_path / 'vit_s16_i1k_90ep.npz'
  shutil.copy(_path('gap_sincos2d_rep'), path)
  cfg, params = load_params(str(path), patch_size=4, hidden_size=16, num_layers=1, num_heads=2,
                            mlp_dim=32, image_size=16)
  assert cfg.name == 'vit_s16_i1k_90ep' and cfg.weights_url.endswith('vit_s16_i1k_90ep.npz')
  assert cfg.num_classes == 10 and cfg.representation_size == 16
  io = _io('gap_sincos2d_rep')
  _assert_within(_logits(cfg, params, io['input']), io['logits'], 1e-5)


def _unstacked(tree: dict, depth: int) -> dict:
  """big_vision's scan tree as its unrolled one (what `vit.load` converts)."""
  out = {}
  for key, shape in tree.items():
    if key.startswith('Transformer/encoderblock/'):
      for i in range(depth):
        out[key.replace('encoderblock/', f'encoderblock_{i}/')] = shape[1:]
    else:
      out[key] = shape
  return out


@pytest.mark.parametrize('name', TWINS)
def test_written_files_are_the_tree_big_vision_restores(tmp_path, capsys, name):
  """Read, written with --to big_vision: big_vision's init tree, key for key
  and shape for shape, and its arrays bit for bit."""
  meta = _meta(name)
  extra = [f'--set={k}={v}' for k, v in ADDED.get(name, {}).items()]
  out = tmp_path / 'out.npz'
  assert convert.main([_path(name), str(out), '--to', 'big_vision'] + extra) == 0
  summary = capsys.readouterr().out
  assert f"'pool_type': '{meta['model']['pool_type']}'" in summary
  written = dict(np.load(out))
  tree = _unstacked(meta['tree'], meta['model']['depth'])
  assert {k: list(v.shape) for k, v in written.items()} == tree
  original = big_vision_layout.to_ours(dict(np.load(_path(name))))
  for k, v in big_vision_layout.to_ours(written).items():
    np.testing.assert_array_equal(v, original[k])


def test_a_class_slot_goes_into_the_class_token(tmp_path):
  """The official layout (position embeddings with the class token's slot)
  written for big_vision: its 'tok' tree, and the same logits read back."""
  twin = dict(patch_size=4, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32,
              num_classes=10, image_size=16)
  cfg = vit_jax.get_model_config('vit_base_patch32_224', **twin)  # official: tanh GELU
  rng = np.random.RandomState(0)
  params = traverse_util.unflatten_dict(
      {k: rng.randn(*s).astype(np.float32) * 0.3 for k, s in expected_shapes(cfg).items()},
      sep='/')
  path = str(tmp_path / 'tok.npz')
  save_params(path, params, cfg, 'big_vision')
  written = dict(np.load(path))
  assert {k: list(v.shape) for k, v in written.items()} == _meta('tok_learn')['tree']
  back_cfg, back = load_params(path)
  assert (back_cfg.classifier, back_cfg.posemb_class_token) == ('token', False)
  x = _io('tok_learn')['input']
  _assert_within(_logits(back_cfg, back, x), _logits(cfg, params, x), 1e-6)


@pytest.mark.parametrize('model, overrides, field', [
    ('vit_base_patch16_224', {}, 'gelu_approximate=False'),
    ('vit_base_resnet50_224', {}, 'ResNet stem'),
    ('vit_small_patch16_224', {'gelu_approximate': True}, 'attn_scale'),
    ('vit_base_patch32_224', {'qkv_bias': False}, 'qkv_bias=False'),
    ('vit_base_patch32_224', {'layer_norm_eps': 1e-5}, 'layer_norm_eps=1e-05'),
])
def test_what_big_vision_cannot_express_is_refused_in_one_line(model, overrides, field):
  cfg = vit_jax.get_model_config(model, **overrides)
  with pytest.raises(CheckpointError, match="cannot be written for big_vision's ViT") as e:
    big_vision_layout.check_writable(cfg)
  assert field in str(e.value) and '\n' not in str(e.value)


def test_the_registered_s16_is_big_visions_released_tree():
  """vit_s16_i1k_*'s parameters, named for big_vision: the tree of
  big_vision's configs/vit_s16_i1k.py model at 224 (from its own init)."""
  meta = _meta('vit_s16_i1k')
  cfg = vit_jax.get_model_config('vit_s16_i1k_300ep')
  flat = {k: np.zeros(s, np.float32) for k, s in expected_shapes(cfg).items()}
  written = big_vision_layout.to_big_vision(flat, cfg)
  assert {k: list(v.shape) for k, v in written.items()} == meta['tree']
  assert sum(int(np.prod(s)) for s in meta['tree'].values()) == 22_122_472
  kwargs = big_vision_layout.model_kwargs(cfg)
  assert {k: kwargs[k] for k in ('pool_type', 'posemb', 'rep_size', 'width', 'depth')} == dict(
      pool_type='gap', posemb='sincos2d', rep_size=384, width=384, depth=12)


def test_to_big_vision_needs_an_npz_destination(tmp_path, capsys):
  assert convert.main([_path('tok_learn'), str(tmp_path / 'out.pth'), '--to', 'big_vision']) == 2
  err = capsys.readouterr().err
  assert '--to big_vision writes a .npz file' in err and not (tmp_path / 'out.pth').exists()


def test_evaluate_and_predict_read_a_big_vision_checkpoint(tmp_path):
  """The eval pipeline and predict.py on a big_vision file, with big_vision's
  preprocessing (area resize, floored crop): the model's logits on those crops."""
  from eval_helpers import photo_folder
  from vit_jax.cli import predict
  from vit_jax.data.preprocess import decode_rgb, eval_crop, normalize
  from vit_jax.eval.evaluate import evaluate
  folder = photo_folder(str(tmp_path / 'photos'), counts=(2, 1, 1))
  cfg, params = _loaded('map_learn_rep24')
  result = evaluate(registry.module_from_config(cfg), params, f'folder:{folder}',
                    model_config=cfg, batch_size=4, workers=2, write_logits=True,
                    progress=False)
  files = [f'{folder}/{ident}' for ident in result['ids']]
  crops = [eval_crop(decode_rgb(f), 16, 0.875, 'area', 'big_vision') for f in files]
  want = _logits(cfg, params, normalize(np.stack(crops), (0.5,) * 3, (0.5,) * 3))
  assert result['num_examples'] == 4
  np.testing.assert_allclose(result['logits'], want, atol=1e-5)
  top = predict.predict(files[:1], _path('map_learn_rep24'), None, 1, None)[0][0]
  probs = np.exp(want[0] - want[0].max()) / np.exp(want[0] - want[0].max()).sum()
  assert top[1] == f'class {probs.argmax()}' and abs(top[0] - probs.max()) < 1e-5
