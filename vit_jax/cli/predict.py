"""Top-5 ImageNet classes of images, and optionally an attention-rollout map.

    vit-jax-predict IMAGE [IMAGE ...] --checkpoint PATH [--model NAME] \
        [--topk 5] [--attention_map OUT.png]

Preprocessing is the model's eval transform (as eval.py). The checkpoint may
also be a model exported for serving (MODEL.jaxexport, MODEL.onnx): it runs
as a server runs it, with the preprocessing and class names of MODEL.json
(`vit_jax.export.runtime`). The attention map
is the rollout of Abnar & Zuidema (2020): per layer the head-averaged
attention plus the identity, renormalised, multiplied through the layers;
the class token's row over the patches, upsampled onto the part of the
image the eval crop covers (the picture is saved at its own size).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

from vit_jax.data.class_names import imagenet_class_names


def attention_rollout(model, params, x, cfg) -> np.ndarray:
  """(batch, grid, grid) rollout maps from the per-layer query/key outputs,
  read where the classifier reads: the class token's row, the first patch's
  ('0'), the pooling probe's attention ('map') or the mean row ('gap')."""
  import jax
  import jax.numpy as jnp
  from vit_jax.models.attention import attention_weights
  from vit_jax.checkpoints.adapt import grid_size
  head_dim = cfg.hidden_size // cfg.num_heads
  scale = cfg.attn_scale if cfg.attn_scale is not None else head_dim ** -0.5

  @jax.jit
  def rollout_of(params, x):
    _, state = model.apply({'params': params}, x, mutable=['intermediates'])
    blocks = state['intermediates']['Transformer']
    rollout = None
    for i in range(cfg.num_layers):
      attn = blocks[f'encoderblock_{i}']['MultiHeadDotProductAttention_0']
      q, k = attn['queries'][0], attn['keys'][0]  # the last block may have the class token only
      w = attention_weights(q, k, scale).mean(axis=1)
      w = w + jnp.eye(w.shape[-1])[:w.shape[-2]]
      w = w / w.sum(axis=-1, keepdims=True)
      rollout = w if rollout is None else w @ rollout
    if cfg.classifier == 'map':
      probe = state['intermediates']['MAPHead_0']['MultiHeadDotProductAttention_0']
      w = attention_weights(probe['queries'][0], probe['keys'][0], head_dim ** -0.5)
      return (w.mean(axis=1) @ rollout)[:, 0]
    if cfg.classifier == 'gap':
      return rollout.mean(axis=1)
    return rollout[:, 0, 1:] if cfg.classifier == 'token' else rollout[:, 0]

  g = grid_size(cfg)
  return np.asarray(rollout_of(params, x)).reshape(-1, g, g)


def save_overlay(path: str, image, heat: np.ndarray, box: Sequence[float]) -> None:
  """The original picture with the normalised map, upsampled onto the crop's
  box, blended in as red; what lies outside the crop stays dim."""
  from PIL import Image
  heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)
  left, top, right, bottom = (int(round(v)) for v in box)
  up = Image.fromarray((heat * 255).astype(np.uint8)).resize(
      (max(right - left, 1), max(bottom - top, 1)), Image.BILINEAR)
  canvas = Image.new('L', image.size)
  canvas.paste(up, (left, top))  # clipped where the crop was padded
  up = np.asarray(canvas, np.float32) / 255.0
  out = np.asarray(image, np.float32) * (0.4 + 0.6 * up[..., None])
  out[..., 0] = np.maximum(out[..., 0], 255.0 * up * 0.8)
  Image.fromarray(out.clip(0, 255).astype(np.uint8)).save(path)


def map_path(base: str, index: int, count: int) -> str:
  if count == 1:
    return base
  stem, ext = os.path.splitext(base)
  return f'{stem}_{index}{ext or ".png"}'


def read_images(images: Sequence[str]) -> list:
  from vit_jax.data.preprocess import decode_rgb
  pictures = []
  for path in images:
    try:
      pictures.append(decode_rgb(path))
    except (OSError, ValueError) as e:
      raise ValueError(f'{path}: cannot read the image ({type(e).__name__})') from None
  return pictures


def eval_inputs(pictures: list, image_size: int, crop_pct: float, interpolation: str,
                crop_mode: str, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """The model's eval transform of each picture, stacked: float32 NHWC."""
  from vit_jax.data.preprocess import eval_crop, normalize
  crops = [eval_crop(p, image_size, crop_pct, interpolation, crop_mode) for p in pictures]
  return normalize(np.stack(crops), mean, std)


def top_classes(probs: np.ndarray, names: Optional[Sequence[str]],
                topk: int) -> list[list[tuple[float, str]]]:
  results = []
  for p in probs:
    top = np.argsort(-p, kind='stable')[:topk]
    results.append([(float(p[c]), names[c] if names else f'class {c}') for c in top])
  return results


def predict_exported(images: Sequence[str], model_path: str, fmt: str,
                     topk: int) -> list[list[tuple[float, str]]]:
  """Top classes from an exported model, run as a server runs it."""
  from vit_jax.export import runtime
  info, run = runtime.load(model_path, fmt)
  if info['output']['name'] != 'logits':
    raise ValueError(f'{model_path}: the model has no head (it returns '
                     f'{info["output"]["name"]}); there are no classes to predict')
  pre = info['preprocessing']
  x = eval_inputs(read_images(images), pre['crop'], pre['crop_pct'], pre['interpolation'],
                  pre['crop_mode'], pre['mean'], pre['std'])
  logits = np.asarray(run(x), np.float64)
  e = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return top_classes(e / e.sum(axis=-1, keepdims=True), info.get('class_names'), topk)


def predict(images: Sequence[str], checkpoint: str, model_name: Optional[str], topk: int,
            attention_map: Optional[str]) -> list[list[tuple[float, str]]]:
  from vit_jax import export
  fmt = export.format_of(checkpoint)
  if fmt:
    given = [flag for flag, v in (('--model', model_name), ('--attention_map', attention_map))
             if v]
    if given:
      raise ValueError(f'{", ".join(given)}: not for an exported model ({checkpoint}); its '
                       'architecture is fixed and it returns the logits only')
    return predict_exported(images, checkpoint, fmt, topk)
  import jax
  from vit_jax import backends
  from vit_jax.models import registry
  from vit_jax.checkpoints import load_params
  from vit_jax.data.preprocess import eval_crop_box
  cfg, params = load_params(checkpoint, model_name, scan_layers=False)  # per-block attention
  model = registry.module_from_config(cfg)
  pictures = read_images(images)
  x = eval_inputs(pictures, cfg.image_size, cfg.crop_pct, cfg.interpolation, cfg.crop_mode,
                  cfg.mean, cfg.std)
  with backends.for_devices(jax.devices()[:1]):  # one program, not one per operation
    probs = np.asarray(jax.jit(lambda p, x: jax.nn.softmax(model.apply({'params': p}, x)))(
        params, x))
  results = top_classes(probs, imagenet_class_names() if cfg.num_classes == 1000 else None, topk)
  if attention_map:
    maps = attention_rollout(model, params, x, cfg)
    for i, (picture, heat) in enumerate(zip(pictures, maps)):
      box = eval_crop_box(*picture.size, cfg.image_size, cfg.crop_pct, cfg.crop_mode)
      save_overlay(map_path(attention_map, i, len(images)), picture, heat, box)
  return results


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('images', nargs='+', metavar='IMAGE')
  p.add_argument('--checkpoint', required=True, help='any file or directory load_params reads, '
                 'or a model exported for serving (.jaxexport, .onnx)')
  p.add_argument('--model', help='registry name, where the checkpoint does not say it')
  p.add_argument('--topk', type=int, default=5)
  p.add_argument('--attention_map', metavar='OUT.png',
                 help='save the attention rollout over the image (OUT_i.png for several)')
  args = p.parse_args(argv)
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  try:
    results = predict(args.images, args.checkpoint, args.model, args.topk, args.attention_map)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  for path, rows in zip(args.images, results):
    print(path)
    for prob, name in rows:
      print(f'  {prob:7.4f}  {name}')
  return 0


def run() -> None:
  """The `vit-jax-predict` command (and `python predict.py` in a checkout)."""
  sys.exit(main())


if __name__ == '__main__':
  run()
