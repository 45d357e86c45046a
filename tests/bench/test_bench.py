"""The benchmark harness: interleaved timing, output, the official-code loader."""
import re
import sys

import pytest

import vit_jax
from vit_jax.backends.cpu import choice
from vit_jax.bench import measure as bench, official_reference


def test_runners_take_turns_and_report_their_median(monkeypatch):
  calls = []
  times = iter([0.0, 1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 10.0, 10.0, 11.0, 11.0, 11.5])
  runners = [bench.Runner('a', lambda: calls.append('a'), 2, 8e9),
             bench.Runner('b', lambda: calls.append('b'), 2)]
  monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(times))
  out = bench.time_interleaved(runners, reps=3, warmup=1, pause=0.0)
  assert calls == ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']  # warm-up, then turns
  # a took 1, 1, 1 s and b 2, 6, 0.5 s: a slow spell in round 2 hit b only
  assert [(r.name, r.seconds) for r in out] == [('a', 1.0), ('b', 2.0)]
  assert '2.0 img/s' in out[0].line(peak_tflops=0.016) and 'MFU  50.0%' in out[0].line(0.016)


def test_a_forward_pass_is_timed_with_its_flops(capsys):
  assert bench.main(['--model', 'vit_tiny_patch16_224', '--batch', '1', '--reps', '1',
                     '--warmup', '0']) == 0
  out = capsys.readouterr().out
  line = out.split('measured matmul peak ')[1].split('\n')[0]
  peak, before, after = (float(x) for x in re.findall(r'\d+\.\d', line))
  assert peak == max(before, after) > 0  # both probes shown, the faster one used
  flops = float(out.split('model FLOPs per image (XLA cost analysis): ')[1].split(' G')[0])
  assert 2.0 < flops < 2.6  # ViT-Ti/16: 1.26 G multiply-adds, less the pruned last block
  # counted on the model as written: XLA cannot see into the CPU kernels' custom calls
  assert 'vit_jax float32' in out and 'img/s' in out and 'MFU' in out
  # which implementation each layer has, and why; the model as written beside ours
  layers = out.split('layers: ')[1].split('\nmodel ')[0].split('\n')
  assert [line.split(':')[0].strip() for line in layers] == list(choice.LAYERS.values())
  assert all(re.fullmatch(r'.+: (kernel|XLA) \(.+\)', line.strip()) for line in layers)
  assert 'speed-up of vit_jax float32 over vit_jax float32, model as written: ' in out


def test_each_kernel_is_compared_reversed(monkeypatch, capsys):
  """`--compare kernels`: one row per replacement, built with that one
  replacement's choice reversed (what the builder saw is recorded)."""
  monkeypatch.setenv(choice.ENV, '0')
  seen = []

  def make(model, cfg, name, batch):
    seen.append({k for k, c in choice.choices().items() if c.kernel})
    return bench.Runner(name, lambda: None, batch)
  cfg = vit_jax.get_model_config('vit_tiny_patch16_224')
  runners = bench.kernel_runners(make, None, cfg, 'float32', 2, 7.0)
  assert seen == [{'attention'}, {'dense'}, {'layer_norm'}, {'bias_gelu'}]
  assert [r.name for r in runners] == [
      'vit_jax float32, attention kernel', 'vit_jax float32, dense weight gradient kernel',
      'vit_jax float32, LayerNorm kernel', 'vit_jax float32, MLP bias + GELU kernel']
  assert all(r.flops == 7.0 for r in runners)
  monkeypatch.setenv(choice.ENV, '1')
  seen.clear()
  assert bench.kernel_runners(make, None, cfg, 'train float32', 2, 7.0)[0].name == (
      'vit_jax train float32, attention XLA')
  assert seen[0] == set(choice.LAYERS) - {'attention'}
  bf16 = vit_jax.get_model_config('vit_tiny_patch16_224', dtype='bfloat16')
  assert bench.kernel_runners(make, None, bf16, 'bfloat16', 2, 7.0) == []
  assert 'CPU device in float32 only' in capsys.readouterr().out


def test_a_wrong_kernel_setting_is_one_clear_error(monkeypatch, capsys):
  monkeypatch.setenv(choice.ENV, 'on')
  assert bench.main(['--model', 'vit_tiny_patch16_224', '--reps', '1']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: VIT_JAX_CPU_KERNELS='on': set it to 1") and '\n' not in err


def test_eval_preprocessing_is_timed_per_photo(capsys, tmp_path):
  assert bench.main(['--mode', 'pipeline', '--reps', '1', '--warmup', '0']) == 0
  out = capsys.readouterr().out
  count = int(out.split(' photos, 224 px crops')[0])
  assert count >= 20  # scikit-image's photos with a side of 96 px or more
  ips = float(out.split('vit_jax eval preprocessing')[1].split('ms')[1].split('img/s')[0])
  assert ips > 0
  assert bench.main(['--mode', 'pipeline', '--photos', str(tmp_path)]) == 2
  assert 'no JPEG or PNG photos' in capsys.readouterr().err


def test_official_comparison_needs_a_checkout(capsys):
  assert bench.main(['--compare', 'official', '--official-checkout', '/nonexistent']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: /nonexistent: not a checkout of') and '\n' not in err


def test_official_model_is_loaded_by_path_next_to_our_package(tmp_path):
  """The official code imports `vit_jax.models_resnet`; ours keeps its name."""
  root = tmp_path / 'vit_jax'
  root.mkdir()
  (root / 'models_resnet.py').write_text('MARK = "official resnet"\n')
  (root / 'models_vit.py').write_text(
      'from vit_jax import models_resnet\n'
      'class VisionTransformer:\n'
      '  def __init__(self, **kw):\n'
      '    self.kw, self.resnet_mark = kw, models_resnet.MARK\n')
  cfg = vit_jax.get_model_config('vit_base_patch32_224')
  model = official_reference.official_model(cfg, str(tmp_path))
  assert model.resnet_mark == 'official resnet'
  assert model.kw['patches'].size == (32, 32) and model.kw['hidden_size'] == 768
  assert model.kw['transformer'] == dict(num_layers=12, mlp_dim=3072, num_heads=12,
                                         dropout_rate=0.0, attention_dropout_rate=0.0)
  assert 'vit_jax.models_resnet' not in sys.modules
  with pytest.raises(ValueError, match='plain ViT models in float32 only'):
    official_reference.official_model(vit_jax.get_model_config('vit_base_resnet50_384'),
                                      str(tmp_path))
