"""Check, with real transformers installed, the Hugging Face directories we write.

Not part of the test suite (torch and transformers are not dependencies).
Run in an environment that has torch, transformers and this package:

    python tools/verify_with_transformers.py [--full]

For each twin under tests/fixtures/hf, and for a timm twin, it converts our
parameters to an HF directory, loads it with `from_pretrained` (no missing,
unexpected or mismatched key allowed) and compares transformers' outputs with
ours; it compares our eval crops with ViTImageProcessor's (both backends) for
the preprocessor_config.json we write. With `--full` a full-size ViT-B/16
ViTForImageClassification with random weights, saved by transformers, is
converted (logits within 1e-4 relative) and written back (transformers loads
it strictly; logits within 1e-5, weights bit-identical).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import (ViTConfig, ViTForImageClassification, ViTImageProcessor,
                          ViTImageProcessorPil, ViTModel)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
sys.path.insert(0, os.path.dirname(__file__))
from conftest import data_path, synthetic_photos, timm_twin  # noqa: E402
from make_hf_fixtures import loaded  # noqa: E402
from vit_jax.checkpoints import hf_format, load_params, save_params  # noqa: E402
from vit_jax.data.preprocess import eval_crop, normalize  # noqa: E402
from vit_jax.models import registry  # noqa: E402


def ours(cfg, params, x_nhwc: np.ndarray) -> np.ndarray:
  return np.asarray(registry.module_from_config(cfg).apply({'params': params}, x_nhwc))


def theirs(path: str, cfg, x_nhwc: np.ndarray) -> np.ndarray:
  """The strictly loaded model's logits (a head) or pooler output (none)."""
  x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    if cfg.num_classes:
      return loaded(ViTForImageClassification, path)(x).logits.numpy()
    out = loaded(ViTModel, path, add_pooling_layer=cfg.representation_size is not None)(x)
    return (out.pooler_output if cfg.representation_size else out.last_hidden_state[:, 0]).numpy()


def check(label: str, cfg, params, x: np.ndarray, tmp: str) -> None:
  dst = os.path.join(tmp, label)
  save_params(dst, params, cfg, fmt='hf')
  diff = np.abs(theirs(dst, cfg, x) - ours(cfg, params, x)).max()
  kind = 'ViTForImageClassification' if cfg.num_classes else 'ViTModel'
  print(f'{label:28s} -> HF: {kind:26s} strict load ok, max |output diff| {diff:.2e}')


def check_preprocessing(tmp: str) -> None:
  for mode, pct, interpolation in (('squash', 1.0, 'bilinear'), ('squash', 0.875, 'bicubic'),
                                   ('center', 0.9, 'bicubic')):
    cfg = registry.get_model_config('vit_base_patch16_224', crop_mode=mode, crop_pct=pct,
                                    interpolation=interpolation)
    dst = os.path.join(tmp, f'pre-{mode}-{pct}')
    os.makedirs(dst)
    with open(os.path.join(dst, hf_format.PREPROCESSOR), 'w') as f:
      json.dump(hf_format.preprocessor_json(cfg), f)
    for backend in (ViTImageProcessor, ViTImageProcessorPil):
      proc = backend.from_pretrained(dst)
      worst = 0.0
      for _, img in synthetic_photos():
        mine = normalize(eval_crop(img, 224, pct, interpolation, mode), cfg.mean, cfg.std)
        got = proc(img, return_tensors='np')['pixel_values'][0].transpose(1, 2, 0)
        worst = max(worst, float(np.abs(mine - got).max()))
      print(f'preprocessing {mode} {pct} {interpolation:8s} vs {backend.__name__:20s} '
            f'max |pixel diff| {worst:.3f} (normalised; 1/255 = {2 / 255:.3f} at std 0.5)')


def check_full(tmp: str) -> None:
  torch.manual_seed(0)
  config = ViTConfig(num_labels=1000)  # google/vit-base-patch16-224's architecture
  model = ViTForImageClassification(config).eval()
  with torch.no_grad():  # transformers' init leaves these at 0/1; make them random too
    for name, p in model.named_parameters():
      if p.ndim == 1 or 'embeddings' in name:
        p.add_(0.02 * torch.randn_like(p))
  src, dst = os.path.join(tmp, 'full-src'), os.path.join(tmp, 'full-dst')
  model.save_pretrained(src)
  x = np.random.RandomState(0).randn(2, 224, 224, 3).astype(np.float32)
  with torch.no_grad():
    ref = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).logits.numpy()
  cfg, params = load_params(src)
  rel = np.abs(ours(cfg, params, x) - ref).max() / np.abs(ref).max()
  print(f'full ViT-B/16 HF -> ours: model {cfg.name}, max |logit diff| / max |logit| {rel:.2e}')
  save_params(dst, params, cfg, fmt='hf')
  back = theirs(dst, cfg, x)
  a, b = load_file(os.path.join(src, 'model.safetensors')), load_file(
      os.path.join(dst, 'model.safetensors'))
  same = sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)
  print(f'full ViT-B/16 ours -> HF: {len(b)} tensors, strict load ok, bit-identical: {same}, '
        f'max |logit diff| {np.abs(back - ref).max():.2e}')
  assert rel < 1e-4 and same and np.abs(back - ref).max() < 1e-5


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--full', action='store_true')
  args = p.parse_args()
  io = np.load(data_path('hf', 'io.npz'))
  with tempfile.TemporaryDirectory() as tmp:
    for name in ('vit_cls', 'vit_bin', 'vit_sharded', 'vit_pooler'):
      cfg, params = load_params(data_path('hf', name))
      check(name, cfg, params, io['input_nhwc'], tmp)
    overrides, twin_io = timm_twin('vit_base_patch16_224')
    cfg, params = load_params(data_path('timm', 'vit_base_patch16_224.pth'),
                              'vit_base_patch16_224', **overrides)
    check('timm vit_base_patch16_224', cfg, params, twin_io['input_nhwc'], tmp)
    headless = {k: v for k, v in params.items() if k != 'head'}
    check('timm twin, no head', registry.get_model_config(
        cfg.name, **{**{k: v for k, v in cfg.to_dict().items() if k != 'name'},
                     'num_classes': 0}), headless, twin_io['input_nhwc'], tmp)
    check_preprocessing(tmp)
    if args.full:
      check_full(tmp)


if __name__ == '__main__':
  main()
