"""What a server needs beside an exported model, as one JSON object: the
input and output, the eval preprocessing and the class names.

It is written beside the model (`DST.json`) and, for ONNX, also inside it
(the model's metadata, key `vit_jax`), so the model file alone is enough.
"""
from __future__ import annotations

import json
import math
import os
from importlib import metadata
from typing import Optional

import ml_collections

from vit_jax import storage

INFO_SUFFIX = '.json'
METADATA_KEY = 'vit_jax'
STEPS = ('decode to RGB; resize to `resize` pixels with `interpolation` (PIL, antialiased): '
         "the shorter side (crop_mode 'center', the longer side in proportion, truncated) or "
         "both sides ('squash'); centre-crop `crop` x `crop`; scale by 1/255; subtract `mean` "
         'and divide by `std` per channel; float32 NHWC, RGB')


def info_path(dst: str) -> str:
  return dst + INFO_SUFFIX


def preprocessing(cfg: ml_collections.ConfigDict) -> dict:
  """The eval transform of `vit_jax.data.preprocess.eval_crop` and `normalize`."""
  return {'steps': STEPS, 'resize': math.floor(cfg.image_size / cfg.crop_pct),
          'crop': int(cfg.image_size), 'crop_pct': float(cfg.crop_pct),
          'crop_mode': cfg.crop_mode, 'interpolation': cfg.interpolation, 'rescale': 1 / 255,
          'mean': [float(v) for v in cfg.mean], 'std': [float(v) for v in cfg.std]}


def _versions(fmt: str) -> dict:
  names = ('vit-jax', 'jax', 'jaxlib') + (('onnx',) if fmt == 'onnx' else ())
  out = {}
  for name in names:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


def info(cfg: ml_collections.ConfigDict, fmt: str, dtype: str,
         class_names: Optional[list[str]], source: str) -> dict:
  """The JSON object for a model exported in `fmt` computing in `dtype`."""
  s = int(cfg.image_size)
  width = cfg.num_classes or cfg.representation_size or cfg.hidden_size
  output = 'logits' if cfg.num_classes else 'features'
  what = (f'{cfg.num_classes} class logits' if cfg.num_classes
          else f'{width} pre-logits features (no head)')
  return {
      'format': fmt, 'model': cfg.name, 'source': source, 'compute_dtype': dtype,
      'description': f'float32 NHWC images ({s}x{s}, preprocessed as `preprocessing` says, any '
                     f'batch size) -> float32 {what}',
      'input': {'name': 'images', 'dtype': 'float32', 'shape': ['batch', s, s, 3],
                'layout': 'NHWC'},
      'output': {'name': output, 'dtype': 'float32', 'shape': ['batch', width]},
      'preprocessing': preprocessing(cfg),
      'class_names': class_names,
      'model_config': cfg.to_dict(),
      'versions': _versions(fmt),
  }


def class_names(src: str, cfg: ml_collections.ConfigDict,
                names_file: Optional[str]) -> Optional[list[str]]:
  """One name per class: from `names_file` (one a line), else a Hugging Face
  directory's `id2label`, else the ImageNet-1k names for 1000 classes."""
  if not cfg.num_classes:
    return None
  if names_file:
    try:
      names = storage.resolve(names_file).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
      raise ValueError(f'{names_file}: cannot read the class names ({e})') from None
    while names and not names[-1].strip():
      names.pop()
    if len(names) != cfg.num_classes:
      raise ValueError(f'{names_file}: {len(names)} class names for a head of '
                       f'{cfg.num_classes} classes; give one name a line')
    return names
  from vit_jax.checkpoints import detect_format, hf_format
  if detect_format(src) == 'hf':
    labels = hf_format.read_config(src).get('id2label') or {}
    names = [labels.get(str(i)) for i in range(cfg.num_classes)]
    if None not in names:
      return names
  if cfg.num_classes == 1000:
    from vit_jax.data.class_names import imagenet_class_names
    return imagenet_class_names()
  return None


def read_info(model_path: str) -> dict:
  """The JSON object beside an exported model (`MODEL.json`)."""
  path = info_path(model_path)
  try:
    return json.loads(storage.resolve(path).read_text())
  except FileNotFoundError:
    raise ValueError(f'{path}: missing; it holds the preprocessing and class names of '
                     f'{os.path.basename(model_path)} (python -m convert writes both)') from None
  except (OSError, ValueError) as e:
    raise ValueError(f'{path}: unreadable ({e})') from None
