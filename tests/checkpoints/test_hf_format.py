"""Hugging Face ViT directories: transformers' outputs, exact round trips,
what transformers would load, and one-line errors with no partial output."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from vit_jax.cli.convert import main
from vit_jax.checkpoints import CheckpointError, hf_format, load_params, save_params
from vit_jax.data.preprocess import decode_rgb, eval_crop, normalize
from vit_jax.eval.evaluate import evaluate
from vit_jax.models import registry
from conftest import data_path, google_twin, jit_apply, jit_init, synthetic_photos, timm_twin
from eval_helpers import photo_folder

IO = dict(np.load(data_path('hf', 'io.npz')))
CLASSIFIERS = ('vit_cls', 'vit_bin', 'vit_sharded')  # the same weights, three ways stored
TWINS = CLASSIFIERS + ('vit_pooler',)


def _hf(name):
  return data_path('hf', name)


def _apply(cfg, params, **fields):
  """Our model's output with some config fields changed and the parameters
  those fields remove (head, pre-logits) left out."""
  cfg = _with(cfg, **fields)
  keep = {k: v for k, v in params.items()
          if not (k == 'head' and not cfg.num_classes)
          and not (k == 'pre_logits' and cfg.representation_size is None)}
  return np.asarray(jax.jit(registry.module_from_config(cfg).apply)({'params': keep},
                                                                    IO['input_nhwc']))


def _with(cfg, **fields):
  return registry.get_model_config(cfg.name, **{**{k: v for k, v in cfg.to_dict().items()
                                                   if k != 'name'}, **fields})


def _one_line_error(capsys, rc, message):
  err = capsys.readouterr().err.strip()
  assert rc == 2 and message in err and err.startswith('error: '), err
  assert len(err.splitlines()) == 1, err


def _copy(tmp_path, name='vit_cls'):
  dst = tmp_path / 'src'
  shutil.copytree(_hf(name), dst)
  return dst


@pytest.mark.parametrize('name', CLASSIFIERS)
def test_classifier_logits_and_class_token_equal_transformers(name):
  cfg, params = load_params(_hf(name))
  np.testing.assert_allclose(_apply(cfg, params), IO['cls_logits'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(_apply(cfg, params, num_classes=0), IO['cls_class_token'],
                             rtol=0, atol=1e-5)


def test_pooler_is_our_pre_logits_and_the_class_token_is_our_features():
  cfg, params = load_params(_hf('vit_pooler'))
  assert cfg.num_classes == 0 and cfg.representation_size == 40
  np.testing.assert_allclose(_apply(cfg, params), IO['pooler_output'], rtol=0, atol=1e-5)
  np.testing.assert_allclose(_apply(cfg, params, representation_size=None),
                             IO['pooler_class_token'], rtol=0, atol=1e-5)


def test_config_json_and_preprocessor_config_give_the_fields():
  cls, _ = load_params(_hf('vit_cls'))
  assert (cls.image_size, cls.patch_size, cls.hidden_size, cls.num_layers, cls.num_heads,
          cls.mlp_dim, cls.num_classes) == (32, 8, 32, 2, 4, 64, 10)
  assert cls.layer_norm_eps == 1e-12 and not cls.gelu_approximate and cls.qkv_bias
  assert cls.representation_size is None and cls.attn_scale is None and cls.resnet is None
  # ViTImageProcessor: a 32x32 bilinear resize, no crop, mean = std = 0.5
  assert (cls.crop_mode, cls.crop_pct, cls.interpolation) == ('squash', 1.0, 'bilinear')
  assert cls.mean == (0.5,) * 3 and cls.std == (0.5,) * 3
  assert cls.name == hf_format.FALLBACK_BASE and cls.source == 'huggingface'
  pooler, _ = load_params(_hf('vit_pooler'))
  assert pooler.gelu_approximate and not pooler.qkv_bias and pooler.layer_norm_eps == 1e-6
  # no preprocessor_config.json: the base model's eval transform stays
  assert (pooler.crop_mode, pooler.crop_pct) == ('center', 0.9)


def test_the_base_model_is_the_registered_vit_of_that_shape():
  fields = dict(patch_size=16, hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072,
                image_size=384, representation_size=None)
  assert hf_format.base_model(fields) == 'vit_base_patch16_384'
  assert hf_format.base_model({**fields, 'image_size': 224, 'representation_size': 768}
                              ) == 'vit_base_patch16_224_in21k'
  assert hf_format.base_model({**fields, 'hidden_size': 1024, 'num_layers': 24, 'num_heads': 16,
                               'mlp_dim': 4096, 'patch_size': 32}) == 'vit_large_patch32_384'


@pytest.mark.parametrize('name', TWINS)
def test_hf_to_ours_to_hf_is_bit_exact(tmp_path, name):
  cfg, params = load_params(_hf(name))
  save_params(str(tmp_path / 'out'), params, cfg, fmt='hf')
  original = hf_format.read_weights(_hf(name))
  written = load_file(tmp_path / 'out' / 'model.safetensors')
  assert sorted(written) == sorted(original)
  for k, v in original.items():
    assert written[k].shape == v.shape and written[k].dtype == v.dtype, k
    assert written[k].tobytes() == np.asarray(v).tobytes(), k


@pytest.mark.parametrize('twin, fields', [
    ('vit_cls', dict(num_classes=10, crop_mode='squash', crop_pct=1.0,
                     interpolation='bilinear', layer_norm_eps=1e-12)),
    ('vit_pooler', dict(num_classes=0, representation_size=40, qkv_bias=False,
                        gelu_approximate=True)),
])
def test_ours_to_hf_has_the_keys_shapes_and_config_transformers_writes(tmp_path, twin, fields):
  cfg = registry.get_model_config('vit_base_patch16_224', image_size=32, patch_size=8,
                                  hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, **fields)
  params = jit_init(registry.module_from_config(cfg), IO['input_nhwc'])['params']
  save_params(str(tmp_path / 'out'), params, cfg, fmt='hf')
  theirs = load_file(os.path.join(_hf(twin), 'model.safetensors'))
  ours = load_file(tmp_path / 'out' / 'model.safetensors')
  assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
  written = json.load(open(tmp_path / 'out' / 'config.json'))
  saved = json.load(open(os.path.join(_hf(twin), 'config.json')))
  saved.pop('transformers_version')
  assert written == saved  # every key save_pretrained writes, with its value
  if twin == 'vit_cls':  # every key the processor saved, with its value
    pre = json.load(open(tmp_path / 'out' / 'preprocessor_config.json'))
    saved = json.load(open(os.path.join(_hf(twin), 'preprocessor_config.json')))
    assert {k: pre[k] for k in saved} == saved and pre['do_center_crop'] is False


def test_imagenet_heads_get_the_imagenet_names(tmp_path):
  overrides, _ = timm_twin('vit_base_patch16_224')
  cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                            'vit_base_patch16_224', **{**overrides, 'num_classes': 1000})
  save_params(str(tmp_path / 'out'), params, cfg, fmt='hf')
  labels = json.load(open(tmp_path / 'out' / 'config.json'))['id2label']
  assert len(labels) == 1000 and labels['0'] == 'tench, Tinca tinca'
  assert labels['207'] == 'golden retriever'


@pytest.mark.parametrize('mode, pct, interpolation', [('center', 0.9, 'bicubic'),
                                                      ('squash', 0.875, 'bilinear'),
                                                      ('squash', 1.0, 'nearest')])
def test_written_preprocessing_reads_back_as_the_same_crops(tmp_path, mode, pct, interpolation):
  cfg = registry.get_model_config('vit_base_patch16_224', crop_mode=mode, crop_pct=pct,
                                  interpolation=interpolation, mean=(0.1, 0.2, 0.3))
  pre = hf_format.preprocessor_json(cfg)
  assert pre['do_center_crop'] == (mode == 'center' or pct != 1.0)
  assert pre['size'] == ({'shortest_edge': 248} if mode == 'center' else
                         {'height': int(224 / pct), 'width': int(224 / pct)})
  (tmp_path / hf_format.PREPROCESSOR).write_text(json.dumps(pre))
  back = hf_format.preprocessing_fields(str(tmp_path), 224, log=pytest.fail)
  assert back['crop_mode'] == mode and back['interpolation'] == interpolation
  assert back['mean'] == (0.1, 0.2, 0.3)
  for _, img in synthetic_photos():
    np.testing.assert_array_equal(eval_crop(img, 224, back['crop_pct'], interpolation, mode),
                                  eval_crop(img, 224, pct, interpolation, mode))


def test_the_google_releases_feature_extractor_config_reads_as_a_squash(tmp_path):
  (tmp_path / hf_format.PREPROCESSOR).write_text(json.dumps(
      {'do_normalize': True, 'do_resize': True, 'feature_extractor_type': 'ViTFeatureExtractor',
       'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5], 'resample': 2, 'size': 224}))
  out = hf_format.preprocessing_fields(str(tmp_path), 224, log=pytest.fail)
  assert out == dict(mean=(0.5,) * 3, std=(0.5,) * 3, interpolation='bilinear', crop_pct=1.0,
                     crop_mode='squash')


def test_what_our_transform_cannot_express_is_noted_and_left_out(tmp_path):
  notes = []
  (tmp_path / hf_format.PREPROCESSOR).write_text(json.dumps(
      {'size': {'shortest_edge': 256}, 'resample': 4, 'rescale_factor': 1 / 127.5}))
  out = hf_format.preprocessing_fields(str(tmp_path), 224, log=notes.append)
  assert 'crop_mode' not in out and 'interpolation' not in out and len(notes) == 3
  assert 'resample 4' in notes[0] and 'rescale_factor' in notes[1]
  assert 'no fixed square input' in notes[2]


def test_predict_and_evaluate_use_the_checkpoints_own_preprocessing(tmp_path):
  from vit_jax.cli import predict
  cfg, params = load_params(_hf('vit_cls'))
  root = photo_folder(str(tmp_path / 'photos'))
  paths = sorted(os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns)
  squash = np.stack([normalize(eval_crop(decode_rgb(p), 32, 1.0, 'bilinear', 'squash'),
                               cfg.mean, cfg.std) for p in paths])
  logits = np.asarray(jit_apply(registry.module_from_config(cfg), {'params': params}, squash))
  [[top]] = predict.predict(paths[:1], _hf('vit_cls'), None, 1, None)
  probs = np.exp(logits[0] - logits[0].max())
  assert top[0] == pytest.approx(probs.max() / probs.sum(), rel=1e-5)
  assert top[1] == f'class {probs.argmax()}'
  out = evaluate(registry.module_from_config(cfg), params, f'folder:{root}', model_config=cfg,
                 batch_size=4, write_logits=True, progress=False, log=lambda m: None)
  ids = [os.path.relpath(p, root) for p in paths]
  np.testing.assert_allclose(out['logits'][np.argsort(out['ids'])], logits[np.argsort(ids)],
                             atol=1e-5)
  center = np.stack([normalize(eval_crop(decode_rgb(p), 32, 1.0, 'bilinear'), cfg.mean, cfg.std)
                     for p in paths])  # the crop the test would miss were the mode ignored
  assert np.abs(center - squash).max() > 0.5


def test_convert_reads_hf_and_writes_orbax_and_hf(tmp_path, capsys):
  assert main([_hf('vit_sharded'), str(tmp_path / 'b16.orbax')]) == 0
  assert 'wrote' in capsys.readouterr().out and (tmp_path / 'b16.orbax' / 'params').is_dir()
  cfg, params = load_params(str(tmp_path / 'b16.orbax'))
  assert cfg.num_classes == 10
  np.testing.assert_allclose(_apply(cfg, params), IO['cls_logits'], rtol=0, atol=1e-5)
  assert main([str(tmp_path / 'b16.orbax'), str(tmp_path / 'back'), '--to', 'hf']) == 0
  assert sorted(os.listdir(tmp_path / 'back')) == ['config.json', 'model.safetensors',
                                                    'preprocessor_config.json']
  umask = os.umask(0)
  os.umask(umask)
  for written, mode in (('', 0o777), ('model.safetensors', 0o666), ('config.json', 0o666)):
    assert os.stat(tmp_path / 'back' / written).st_mode & 0o777 == mode & ~umask, written
  cfg, params = load_params(str(tmp_path / 'back'))
  np.testing.assert_allclose(_apply(cfg, params), IO['cls_logits'], rtol=0, atol=1e-5)
  assert main([_hf('vit_cls'), str(tmp_path / 'back'), '--to', 'hf']) == 2  # exists
  assert main([_hf('vit_cls'), str(tmp_path / 'back'), '--overwrite', '--to', 'hf']) == 0


def _edit_config(src, **changes):
  cfg = json.load(open(src / 'config.json'))
  cfg.update(changes)
  (src / 'config.json').write_text(json.dumps(cfg))


def _edit_weights(src, drop=(), add=None):
  sd = load_file(src / 'model.safetensors')
  for k in drop:
    del sd[k]
  save_file({**sd, **(add or {})}, src / 'model.safetensors')


@pytest.mark.parametrize('breakage, args, message', [
    (lambda s: _edit_config(s, model_type='deit'), [],
     "model_type 'deit' is not supported; only 'vit' (ViTModel, ViTForImageClassification)"),
    (lambda s: os.remove(s / 'model.safetensors'), [], 'src: no weights file'),
    (lambda s: _edit_weights(s, drop=['vit.encoder.layer.1.output.dense.bias']), [],
     'missing keys vit.encoder.layer.1.output.dense.bias'),
    (lambda s: _edit_weights(s, add={'vit.pooler.dense.bias': np.zeros(32, np.float32)}), [],
     'unexpected keys vit.pooler.dense.bias'),
    (lambda s: _edit_config(s, intermediate_size=65), [],
     'shape mismatch for Transformer/encoderblock_0/MlpBlock_0/Dense_0'),
    (lambda s: _edit_config(s, hidden_act='quick_gelu'), [], "hidden_act 'quick_gelu'"),
    (lambda s: _edit_config(s, id2label={'0': 'a'}), [], 'id2label has 1 labels'),
    (lambda s: None, ['--model', 'vit_base_resnet50_384'],
     'no ResNet stem (transformers has no ViT-hybrid model); model vit_base_resnet50_384'),
    (lambda s: None, ['--set', 'resnet=(3, 4, 9)'],
     'no ResNet stem (transformers has no ViT-hybrid model); the override resnet=(3, 4, 9) asks'),
    (lambda s: None, ['--model', 'vit_small_patch16_224'],
     'give attn_scale None, model vit_small_patch16_224 has 0.036'),
    (lambda s: None, ['--set', 'hidden_size=64'],
     'give hidden_size 32, the override hidden_size=64 has 64'),
])
def test_bad_hf_inputs_fail_in_one_line_with_no_output(tmp_path, capsys, breakage, args, message):
  src = _copy(tmp_path)
  breakage(src)
  rc = main([str(src), str(tmp_path / 'out'), *args])
  _one_line_error(capsys, rc, message)
  assert sorted(os.listdir(tmp_path)) == ['src']


def test_a_missing_shard_is_named(tmp_path, capsys):
  src = _copy(tmp_path, 'vit_sharded')
  os.remove(src / 'model-00002-of-00003.safetensors')
  _one_line_error(capsys, main([str(src), str(tmp_path / 'out.npz')]),
                  'shard model-00002-of-00003.safetensors is missing')


@pytest.mark.parametrize('twin, args, message', [
    ('vit_base_resnet50_384', [], 'transformers has no ViT-hybrid (R50+ViT) model'),
    ('vit_small_patch16_224', [], 'attention scale 0.102062 is not head_dim ** -0.5 = 0.288675'),
])
def test_what_transformers_cannot_express_is_refused(tmp_path, capsys, twin, args, message):
  overrides, _ = timm_twin(twin)
  flags = [a for k, v in overrides.items() if k != 'num_classes' for a in ('--set', f'{k}={v}')]
  rc = main([data_path('timm', f'{twin}.pth'), str(tmp_path / 'out'), '--to', 'hf',
             '--model', twin, '--num-classes', str(overrides['num_classes']), *flags, *args])
  _one_line_error(capsys, rc, message)
  assert os.listdir(tmp_path) == []


def test_gap_and_pre_logits_before_a_head_are_refused_and_a_headless_pooler_is_not(tmp_path):
  overrides, _ = google_twin('ViT-B_16-repr')
  cfg, params = load_params(data_path('google', 'ViT-B_16-repr.npz'),
                            'vit_base_patch16_224_in21k', **overrides)
  with pytest.raises(CheckpointError, match='no pre-logits layer before its head; --num-classes 0'):
    save_params(str(tmp_path / 'a'), params, cfg, fmt='hf')
  with pytest.raises(CheckpointError, match="classifier 'gap'"):
    save_params(str(tmp_path / 'b'), params, _with(cfg, classifier='gap'), fmt='hf')
  assert os.listdir(tmp_path) == []
  headless = {k: v for k, v in params.items() if k != 'head'}
  save_params(str(tmp_path / 'c'), headless, _with(cfg, num_classes=0), fmt='hf')
  written = json.load(open(tmp_path / 'c' / 'config.json'))
  assert written['architectures'] == ['ViTModel']
  assert written['pooler_output_size'] == cfg.representation_size
  assert 'id2label' not in written


def test_to_must_agree_with_a_file_suffix(tmp_path, capsys):
  for dst in ('x.npz', 'x.orbax'):
    rc = main([_hf('vit_cls'), str(tmp_path / dst), '--to', 'hf'])
    _one_line_error(capsys, rc, '--to hf writes a directory')
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('fields, message', [
    (dict(posemb='sincos2d'), "posemb 'sincos2d'"),
    (dict(posemb_class_token=False), 'posemb_class_token=False'),
    (dict(classifier='map'), "classifier 'map'"),
])
def test_big_visions_options_are_refused_for_transformers(fields, message):
  cfg = registry.get_model_config('vit_base_patch16_224', **fields)
  with pytest.raises(CheckpointError, match=message):
    hf_format.check_writable(cfg)


def test_a_big_vision_model_is_no_base_for_an_hf_checkpoint():
  """An HF S/16 with a pooler has the big_vision S/16's shape and pre-logits
  size, but learned embeddings with a class slot: DeiT-S is its base."""
  fields = dict(patch_size=16, hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536,
                image_size=224, representation_size=384, posemb='learn')
  assert hf_format.base_model(fields) == 'deit_small_patch16_224'
