"""Check both export routes on every registered architecture, and at full size.

Not part of the test suite (it compiles every architecture). Run in an
environment with the export extra (`pip install -e ".[export]"`):

    python tools/verify_export.py [--full] [--models NAME ...]

For each distinct registered architecture (its patch size, width, heads,
MLP, image size, stem, pooling, position embeddings and class slot, head,
pre-logits, GELU and epsilons; one block instead of its depth, random
weights), and for big_vision's options no registered model uses (attention
pooling, the first patch token, learned embeddings without a class slot,
sin-cos ones with one; `VARIANTS`), it writes a jax-export file and an ONNX
file with `python -m convert`'s code and prints the largest difference
from our jitted apply relative to the largest logit, at batch sizes 2 and 3
(jax-export: the same batch size on both sides), and for the hybrids how far
our float32 apply and the ONNX graph each are from the model computed in
float64 (their float32 rounding, where they differ by more than 1e-5).
With `--full`, the full-size ViT-B/16 (vit_base_patch16_224, 86.6M
parameters, random weights) as well, with file sizes and times.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import jax
import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
from conftest import random_params  # noqa: E402
from vit_jax import export  # noqa: E402
from vit_jax.checkpoints import save_params  # noqa: E402
from vit_jax.models import registry  # noqa: E402

ARCH_FIELDS = registry.MODULE_FIELDS + ('image_size',)
BATCHES = (2, 3)
# big_vision's choices no registered model makes: on the i1k ViT-S/16 (tanh
# GELU, no class slot), and sin-cos embeddings beside a class token's slot
VARIANTS = (('vit_s16_i1k_90ep', dict(classifier='map')),
            ('vit_s16_i1k_90ep', dict(classifier='0')),
            ('vit_s16_i1k_90ep', dict(classifier='token', posemb='learn')),
            ('vit_base_patch16_224', dict(posemb='sincos2d')))


def architectures(names) -> dict:
  """One registered name for each distinct architecture."""
  seen = {}
  for name in names:
    cfg = registry.get_model_config(name)
    key = tuple(str(cfg[f]) for f in ARCH_FIELDS if f != 'num_layers')
    seen.setdefault(key, name)
  return {name: None for name in seen.values()}


def relative(a, b) -> float:
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def float64_logits(cfg, params, x: np.ndarray) -> np.ndarray:
  """The model computed in float64: the reference both float32 routes round from."""
  jax.config.update('jax_enable_x64', True)
  try:
    model = registry.vit.VisionTransformer(dtype=np.float64,
                                           **{k: cfg[k] for k in registry.MODULE_FIELDS})
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    return np.asarray(jax.jit(lambda p, x: model.apply({'params': p}, x))(p64, x))
  finally:
    jax.config.update('jax_enable_x64', False)


def check(name: str, tmp: str, **overrides) -> None:
  cfg = registry.get_model_config(name, **overrides)
  params = random_params(cfg, seed=1)
  src = os.path.join(tmp, f'{name}.orbax')  # any architecture, its config recorded
  save_params(src, params, cfg)
  x = np.random.RandomState(2).randn(max(BATCHES), cfg.image_size, cfg.image_size, 3)
  x = x.astype(np.float32)
  apply = jax.jit(lambda x: registry.module_from_config(cfg).apply({'params': params}, x))
  ours = {b: np.asarray(apply(x[:b])) for b in BATCHES}
  label = ' '.join([name] + [f'{k}={v!r}' for k, v in overrides.items() if k != 'num_layers'])
  line = [f'{label:30s} depth {cfg.num_layers:2d}']
  outputs = {}
  for fmt in export.FORMATS:
    dst = os.path.join(tmp, name + export.SUFFIXES[fmt])
    start = time.time()
    export.export_checkpoint(src, dst, fmt, None, {}, log=lambda msg: None)
    written = time.time() - start
    if fmt == 'onnx':
      session = ort.InferenceSession(dst, providers=['CPUExecutionProvider'])
      run = lambda x: session.run(None, {'images': x})[0]  # noqa: E731
    else:
      with open(dst, 'rb') as f:
        exported = jax.export.deserialize(bytearray(f.read()))
      run = lambda x: np.asarray(exported.call(x))  # noqa: E731
    start = time.time()
    got = outputs[fmt] = {b: run(x[:b]) for b in BATCHES}
    ran = time.time() - start
    worst = max(relative(got[b], ours[b]) for b in BATCHES)
    size = sum(os.path.getsize(p) for p in (dst, dst + '.data') if os.path.exists(p))
    line.append(f'{fmt} {worst:.1e} ({size / 1e6:.0f} MB, written in {written:.0f} s, '
                f'first runs {ran:.0f} s)')
  if cfg.resnet is not None:
    truth = float64_logits(cfg, params, x[:max(BATCHES)])
    b = max(BATCHES)
    line.append(f'from float64: ours {relative(ours[b], truth):.1e}, '
                f'onnx {relative(outputs["onnx"][b], truth):.1e}')
  print(' | '.join(line), flush=True)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--full', action='store_true', help='also the full-size ViT-B/16')
  p.add_argument('--models', nargs='*', help='registered names (default: every architecture)')
  args = p.parse_args()
  jax.config.update('jax_platforms', 'cpu')
  print(f'jax {jax.__version__}, onnxruntime {ort.__version__}; largest |difference| / largest '
        f'|logit| at batch sizes {BATCHES}')
  with tempfile.TemporaryDirectory() as tmp:
    runs = [(name, {}) for name in architectures(args.models or registry.list_models())]
    for name, fields in runs + ([] if args.models else list(VARIANTS)):
      check(name, tmp, num_layers=1, **fields)
      for f in os.listdir(tmp):
        path = os.path.join(tmp, f)
        if os.path.isdir(path):
          shutil.rmtree(path)
        else:
          os.remove(path)
    if args.full:
      check('vit_base_patch16_224', tmp)


if __name__ == '__main__':
  main()
