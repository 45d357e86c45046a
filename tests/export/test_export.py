"""Exported models, run where the model code is not: plain JAX (jax-export)
and ONNX Runtime, each in a subprocess that cannot import flax or vit_jax
(`serve.py`), against our jitted apply; then predict.py on the exported
files, and the one-line errors of `python -m convert`.

One module fixture writes every export and starts both servers at once,
then computes our references while they run.
"""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import vit_jax
from vit_jax.checkpoints import load_params, save_params
from vit_jax.cli import convert, predict
from vit_jax.export import onnx_export, serving
from vit_jax.models import registry
from conftest import data_path, jit_apply, random_params, timm_twin

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64,
            num_classes=1000)
SERVE = os.path.join(os.path.dirname(__file__), 'serve.py')
JAX_BATCHES = (3, 5)  # neither was traced: the export's batch is symbolic
ORT_BATCHES = (1, 4)
TWINS = {'small': 'vit_small_patch16_224', 'r50': 'vit_base_resnet50_384'}
# big_vision's options, each in a one-block tiny ViT: the i1k baselines'
# architecture (gap, sin-cos embeddings, pre-logits of the width; written from
# a big_vision .npz as their releases are), attention pooling (its attention
# keeps its biases and head_dim ** -0.5 whatever the blocks use), the first
# patch token, learned embeddings without a class slot, sin-cos ones with one
OPTIONS = {'i1k': ('vit_s16_i1k_90ep', {}),
           'map': ('vit_base_patch16_224', dict(classifier='map', representation_size=24,
                                                qkv_bias=False, attn_scale=0.3)),
           'first_patch': ('vit_base_patch16_224', dict(classifier='0')),
           'late_cls': ('vit_base_patch16_224', dict(posemb_class_token=False)),
           'sincos_cls': ('vit_base_patch16_224', dict(posemb='sincos2d'))}
ORT_KEYS = ('tiny', 'tiny_external', *TWINS, *OPTIONS)
HAVE_ORT = importlib.util.find_spec('onnxruntime') is not None
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason='onnxruntime is not installed: it has no '
                               'wheel for this Python (the export extra skips it)')


def cli(*argv) -> int:
  return convert.main([str(a) for a in argv])


def twin_args(name: str) -> list:
  overrides, _ = timm_twin(name)
  args = [data_path('timm', f'{name}.pth'), '--model', name,
          '--num-classes', overrides.pop('num_classes')]
  for key, value in overrides.items():
    args += ['--set', f'{key}={value!r}']
  return args


def start_server(runtime: str, tmp, runs: list):
  job = tmp / f'{runtime}.json'
  job.write_text(json.dumps({'inputs': str(tmp / 'inputs.npz'), 'out': str(tmp / f'{runtime}.npz'),
                             'runs': runs}))
  return subprocess.Popen([sys.executable, SERVE, runtime, str(job)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def finish(proc, tmp, runtime: str) -> dict:
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  with np.load(tmp / f'{runtime}.npz') as z:
    return {k: (json.loads(str(z[k])) if k.endswith('/info') else z[k]) for k in z.files}


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('export')
  cfg = vit_jax.get_model_config('vit_base_patch16_224', **TINY)
  params = random_params(cfg)
  save_params(str(tmp / 'tiny.safetensors'), params, cfg)
  src = tmp / 'tiny.safetensors'
  assert cli(src, tmp / 'tiny.jaxexport', '--to', 'jax-export') == 0
  assert cli(src, tmp / 'tiny_bf16.jaxexport', '--to', 'jax-export', '--dtype', 'bfloat16') == 0
  assert cli(src, tmp / 'tiny.onnx', '--dtype', 'bfloat16') == 0  # float32, with a note
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(onnx_export, 'EXTERNAL_DATA_BYTES', 0)
    assert cli(src, tmp / 'tiny_external.onnx', '--to', 'onnx') == 0
  for key, name in TWINS.items():
    twin, *options = twin_args(name)
    assert cli(twin, tmp / f'{key}.onnx', *options) == 0
  options = {key: vit_jax.get_model_config(name, **{**TINY, 'num_layers': 1, **fields})
             for key, (name, fields) in OPTIONS.items()}
  options = {key: (ocfg, random_params(ocfg)) for key, ocfg in options.items()}
  i1k_cfg, i1k_params = options['i1k']
  save_params(str(tmp / 'i1k.npz'), i1k_params, i1k_cfg, fmt='big_vision')
  assert cli(tmp / 'i1k.npz', tmp / 'i1k.onnx', '--set', 'image_size=32') == 0
  assert cli(tmp / 'i1k.npz', tmp / 'i1k.jaxexport', '--set', 'image_size=32') == 0
  for key, (ocfg, oparams) in options.items():
    if key != 'i1k':
      graph = onnx_export.build(ocfg, oparams, serving.info(ocfg, 'onnx', 'float32', None, key))
      (tmp / f'{key}.onnx').write_bytes(onnx_export.serialize(graph, '')[''])

  rng = np.random.RandomState(7)
  inputs = {'tiny': rng.randn(max(JAX_BATCHES), 32, 32, 3).astype(np.float32)}
  for key, name in TWINS.items():
    io = timm_twin(name)[1]['input_nhwc']
    inputs[key] = np.concatenate([io, rng.randn(2, *io.shape[1:]).astype(np.float32)])
  np.savez(tmp / 'inputs.npz', **inputs)
  jax_server = start_server('jax', tmp, [
      {'key': 'f32', 'model': str(tmp / 'tiny.jaxexport'), 'input': 'tiny',
       'batches': JAX_BATCHES},
      {'key': 'bf16', 'model': str(tmp / 'tiny_bf16.jaxexport'), 'input': 'tiny',
       'batches': JAX_BATCHES[:1]},
      {'key': 'i1k', 'model': str(tmp / 'i1k.jaxexport'), 'input': 'tiny',
       'batches': ORT_BATCHES[-1:]}])
  ort_server = HAVE_ORT and start_server('onnxruntime', tmp, [
      {'key': key, 'model': str(tmp / f'{key}.onnx'), 'input': key if key in TWINS else 'tiny',
       'batches': ORT_BATCHES} for key in ORT_KEYS])

  model = registry.module_from_config(cfg)
  bf16 = registry.module_from_config(vit_jax.get_model_config('vit_base_patch16_224', **TINY,
                                                              dtype='bfloat16'))
  ours = {f'f32/{b}': jit_apply(model, {'params': params}, inputs['tiny'][:b])
          for b in JAX_BATCHES}
  ours['bf16/3'] = jit_apply(bf16, {'params': params}, inputs['tiny'][:3])
  ours['tiny'] = ours[f'f32/{max(JAX_BATCHES)}']
  for key, name in TWINS.items():
    overrides, _ = timm_twin(name)
    tcfg, tparams = load_params(data_path('timm', f'{name}.pth'), name, **overrides)
    ours[key] = jit_apply(registry.module_from_config(tcfg), {'params': tparams}, inputs[key])
  modules = {key: registry.module_from_config(ocfg) for key, (ocfg, _) in options.items()}
  apply_all = jax.jit(lambda p, x: {k: m.apply({'params': p[k]}, x) for k, m in modules.items()})
  ours.update(apply_all({key: p for key, (_, p) in options.items()},
                        inputs['tiny'][:max(ORT_BATCHES)]))  # one program for all
  ours = {k: np.asarray(v) for k, v in ours.items()}
  return dict(tmp=tmp, cfg=cfg, ours=ours, jax=finish(jax_server, tmp, 'jax'),
              ort=ort_server and finish(ort_server, tmp, 'onnxruntime'))


def relative(a, b) -> float:
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def test_jax_export_runs_in_plain_jax_at_untraced_batch_sizes(served):
  got, ours = served['jax'], served['ours']
  info = got['f32/info']
  assert info['modules'] == ['jax', 'jaxlib']  # no flax, no vit_jax
  assert info['input_shape'] == '(batch, 32, 32, 3)'
  assert info['platforms'] == ['cpu', 'cuda', 'tpu']
  # the model as written: no FFI kernel, no cuDNN call, only the batch check
  assert info['custom_calls'] == ['shape_assertion']
  for b in JAX_BATCHES:
    assert got[f'f32/{b}'].shape == (b, 1000)
    assert relative(got[f'f32/{b}'], ours[f'f32/{b}']) <= 1e-6


def test_jax_export_of_big_visions_i1k_architecture(served):
  """gap, sin-cos embeddings and pre-logits traced as the model computes them."""
  got, ours = served['jax'], served['ours']
  assert got['i1k/info']['custom_calls'] == ['shape_assertion']
  b = ORT_BATCHES[-1]
  assert got[f'i1k/{b}'].shape == (b, 1000)
  assert relative(got[f'i1k/{b}'], ours['i1k']) <= 1e-6


def test_jax_export_in_bfloat16_computes_in_bfloat16(served):
  got, ours = served['jax'], served['ours']
  assert got['bf16/info']['bf16_ops'] > 0 and got['f32/info']['bf16_ops'] == 0
  assert got['bf16/3'].dtype == np.float32
  assert relative(got['bf16/3'], ours['bf16/3']) <= 1e-6
  assert relative(got['bf16/3'], ours['f32/3']) > 1e-4  # not the float32 program


@needs_ort
@pytest.mark.parametrize('key', ORT_KEYS)
def test_onnx_runs_in_onnxruntime(served, key):
  """Within 1e-5 of the largest logit: the tiny ViT, its copy with external
  weights, the card's S/16 (2-D patch weight, scale 768 ** -0.5), the R50
  hybrid (weight standardisation folded) and big_vision's options; a
  dynamic batch."""
  got, ours = served['ort'], served['ours']['tiny' if key == 'tiny_external' else key]
  info = got[f'{key}/info']
  assert info['modules'] == ['onnxruntime']
  size = 64 if key in TWINS else 32
  assert (info['input'], info['input_shape']) == ('images', str(['batch', size, size, 3]))
  for b in ORT_BATCHES:
    assert got[f'{key}/{b}'].shape == ours[:b].shape
    assert relative(got[f'{key}/{b}'], ours[:b]) <= 1e-5, key
  name = TWINS.get(key) or OPTIONS.get(key, ('vit_base_patch16_224',))[0]
  assert json.loads(info['metadata'])['model'] == name


def test_the_onnx_graph_is_valid_and_the_batch_symbolic(served):
  import onnx
  for key in ('tiny', 'r50', 'i1k', 'map'):
    path = str(served['tmp'] / f'{key}.onnx')
    onnx.checker.check_model(path, full_check=True)  # strict shape inference too
    model = onnx.load(path)
    assert model.opset_import[0].version == 17 and model.ir_version == 8
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    size = 64 if key in TWINS else 32
    assert dims == ['batch', size, size, 3]


def test_preprocessing_and_class_names_beside_and_inside(served):
  tmp = served['tmp']
  import onnx
  beside = json.loads((tmp / 'tiny.onnx.json').read_text())
  props = {p.key: p.value for p in onnx.load(str(tmp / 'tiny.onnx')).metadata_props}
  assert beside == json.loads(props['vit_jax'])
  assert beside['compute_dtype'] == 'float32'  # asked for bfloat16: ONNX stays float32
  pre = beside['preprocessing']
  assert (pre['resize'], pre['crop'], pre['crop_pct'], pre['crop_mode'], pre['interpolation'],
          pre['mean'], pre['std']) == (35, 32, 0.9, 'center', 'bicubic', [0.5] * 3, [0.5] * 3)
  assert beside['class_names'] == predict.imagenet_class_names()
  assert beside['input']['shape'] == ['batch', 32, 32, 3]
  assert beside['output'] == {'name': 'logits', 'dtype': 'float32', 'shape': ['batch', 1000]}
  small = json.loads((tmp / 'small.onnx.json').read_text())
  assert (small['preprocessing']['mean'], small['class_names']) == (
      [0.485, 0.456, 0.406], None)  # 10 classes with no names given
  jax_info = json.loads((tmp / 'tiny_bf16.jaxexport.json').read_text())
  assert (jax_info['format'], jax_info['compute_dtype']) == ('jax-export', 'bfloat16')
  assert os.path.exists(tmp / 'tiny_external.onnx.data')


@pytest.fixture(scope='module')
def photos(served):
  import skimage.data
  from PIL import Image
  paths = []
  for name in ('chelsea', 'coffee', 'astronaut'):
    path = served['tmp'] / f'{name}.png'
    Image.fromarray(getattr(skimage.data, name)()).save(path)
    paths.append(str(path))
  return paths


@pytest.fixture(scope='module')
def source_top5(served, photos) -> list:
  """(probability, class name) rows of the source checkpoint, image after image."""
  results = predict.predict(photos, str(served['tmp'] / 'tiny.safetensors'), None, 5, None)
  return [row for rows in results for row in rows]


@pytest.mark.parametrize('exported', ['tiny.jaxexport', pytest.param('tiny.onnx',
                                                                     marks=needs_ort)])
def test_predict_gives_the_source_top5_from_exported_files(served, photos, source_top5, capsys,
                                                           exported):
  assert predict.main([*photos, '--checkpoint', str(served['tmp'] / exported)]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 6 * len(photos) and lines[0] == photos[0]
  rows = [line.split(None, 1) for line in lines if line.startswith(' ')]
  assert [name for _, name in rows] == [name for _, name in source_top5]
  np.testing.assert_allclose([float(p) for p, _ in rows], [p for p, _ in source_top5],
                             atol=1e-4)


def one_line_error(capsys, *argv) -> str:
  assert cli(*argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and '\n' not in err, err
  return err


def test_bad_requests_are_one_line_and_leave_nothing(served, capsys, tmp_path):
  src = served['tmp'] / 'tiny.safetensors'
  assert 'not a format' in one_line_error(capsys, src, tmp_path / 'm.tflite', '--to', 'tflite')
  assert '.onnx' in one_line_error(capsys, src, tmp_path / 'm.jaxexport', '--to', 'onnx')
  assert '--dtype' in one_line_error(capsys, src, tmp_path / 'm.npz', '--dtype', 'bfloat16')
  assert "'int8'" in one_line_error(capsys, src, tmp_path / 'm.onnx', '--dtype', 'int8')
  (tmp_path / 'kept.onnx').write_text('mine')
  assert 'exists' in one_line_error(capsys, src, tmp_path / 'kept.onnx')
  assert (tmp_path / 'kept.onnx').read_text() == 'mine'
  (tmp_path / 'other.jaxexport.json').write_text('mine')
  assert 'other.jaxexport.json exists' in one_line_error(capsys, src,
                                                         tmp_path / 'other.jaxexport')
  with pytest.MonkeyPatch.context() as mp:  # an architecture the writer cannot express
    mp.setattr(onnx_export, 'CLASSIFIERS', ('gap',))
    err = one_line_error(capsys, src, tmp_path / 'token.onnx')
  assert "classifier 'token'" in err
  from vit_jax.export import jax_export
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(jax_export, 'MAX_WEIGHT_BYTES', 1000)
    assert '2 GiB' in one_line_error(capsys, src, tmp_path / 'big.jaxexport')
  assert sorted(os.listdir(tmp_path)) == ['kept.onnx', 'other.jaxexport.json']


def test_class_names_from_a_file_or_a_hugging_face_directory(tmp_path, capsys):
  hf = data_path('hf', 'vit_cls')
  assert cli(hf, tmp_path / 'hf.onnx') == 0
  info = json.loads((tmp_path / 'hf.onnx.json').read_text())
  assert info['class_names'] == [f'LABEL_{i}' for i in range(10)]
  names = tmp_path / 'names.txt'
  names.write_text(''.join(f'class {c}\n' for c in 'abcdefghij'))
  assert cli(hf, tmp_path / 'named.onnx', '--class-names', names) == 0
  info = json.loads((tmp_path / 'named.onnx.json').read_text())
  assert info['class_names'][:2] == ['class a', 'class b'] and len(info['class_names']) == 10
  names.write_text('only\ntwo\n')
  assert '2 class names' in one_line_error(capsys, hf, tmp_path / 'bad.onnx', '--class-names',
                                           names)
  assert not os.path.exists(tmp_path / 'bad.onnx')


def docs_preprocess():
  """The `preprocess` of docs/export.md (PIL and numpy only), run as written there."""
  page = os.path.join(os.path.dirname(__file__), '..', '..', 'docs', 'export.md')
  with open(page) as f:
    text = f.read()
  start = text.index('```python\nimport numpy as np\nfrom PIL import Image\n')
  block = text[text.index('\n', start) + 1:text.index('\n```', start)]
  namespace = {}
  exec(block, namespace)
  return namespace['preprocess']


@pytest.mark.parametrize('overrides', [dict(), dict(crop_mode='squash', crop_pct=1.0,
                                                     interpolation='bilinear'),
                                       dict(crop_pct=0.875, image_size=64)])
def test_the_docs_preprocessing_from_the_json_is_our_eval_transform(tmp_path, overrides):
  from vit_jax.data.preprocess import decode_rgb, eval_crop, normalize
  from conftest import synthetic_photos
  cfg = vit_jax.get_model_config('vit_small_patch16_224', **overrides)
  pre = json.loads(json.dumps(serving.preprocessing(cfg)))
  preprocess = docs_preprocess()
  for name, img in synthetic_photos():
    path = str(tmp_path / f'{name}.png')
    img.save(path)
    want = normalize(eval_crop(decode_rgb(path), cfg.image_size, cfg.crop_pct,
                               cfg.interpolation, cfg.crop_mode), cfg.mean, cfg.std)
    got = preprocess(path, pre)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want, err_msg=name)
