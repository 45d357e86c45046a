"""Hugging Face transformers ViT directories, read and written without torch.

A directory with a `config.json` of `model_type` "vit": the architecture comes
from config.json, the weights from `model.safetensors`, sharded safetensors
(`model.safetensors.index.json`) or `pytorch_model.bin` (our safe reader: no
pickle code runs), the eval preprocessing from `preprocessor_config.json`.
An HF checkpoint is no registered model, so its config is the registered plain
ViT of the same shape (else vit_base_patch16_224) with every field config.json
gives set over it: the name is a label, config.json is the truth.

Writing gives what `ViTForImageClassification.from_pretrained` (a head) or
`ViTModel.from_pretrained` (no head; its pooler is our pre-logits layer)
loads with no missing, unexpected or mismatched key. transformers' ViT cannot
express the R50 hybrid, another attention scale, a 'gap' classifier or a
pre-logits layer before a head; those are refused.
"""
from __future__ import annotations

import json
import math
import os
from importlib import resources
from typing import Any, Callable, Optional

import ml_collections
import numpy as np
from etils import epath
from safetensors.numpy import save

from vit_jax import storage
from vit_jax.checkpoints import hf_layout, safetensors_io, timm_layout
from vit_jax.checkpoints.errors import CheckpointError
from vit_jax.checkpoints.torch_format import read_pth
from vit_jax.models import registry

CONFIG, PREPROCESSOR, WEIGHTS = 'config.json', 'preprocessor_config.json', 'model.safetensors'
# In transformers' order of preference; an index names the shards.
WEIGHT_FILES = (WEIGHTS, 'model.safetensors.index.json', 'pytorch_model.bin',
                'pytorch_model.bin.index.json')
EXACT_GELU = ('gelu', 'gelu_python')
TANH_GELU = ('gelu_pytorch_tanh', 'gelu_new', 'gelu_python_tanh', 'gelu_fast', 'gelu_accurate')
RESAMPLE = {0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic'}  # PIL's codes
# Fields config.json and the weights fix: --model and --set may not contradict them.
FIXED = ('resnet', 'attn_scale', 'classifier', 'patch_size', 'hidden_size', 'num_layers',
         'num_heads', 'mlp_dim', 'qkv_bias', 'representation_size')
FALLBACK_BASE = 'vit_base_patch16_224'
Log = Callable[[str], Any]


def is_hf_dir(path: str) -> bool:
  """A transformers directory: its config.json names a `model_type` (a
  training workdir's config.json, the run's config, does not)."""
  config = os.path.join(path, CONFIG)
  if not epath.Path(config).is_file():
    return False
  try:
    with epath.Path(config).open() as f:
      return 'model_type' in json.load(f)
  except (ValueError, OSError, TypeError):
    return True  # unreadable: read as HF, which names the problem


def _json(path: str) -> dict:
  try:
    with epath.Path(path).open() as f:
      out = json.load(f)
  except (ValueError, OSError) as e:
    raise CheckpointError(f'{path}: unreadable JSON ({e})') from None
  if not isinstance(out, dict):
    raise CheckpointError(f'{path}: not a JSON object')
  return out


def read_config(path: str) -> dict:
  hf = _json(os.path.join(path, CONFIG))
  if hf.get('model_type') != 'vit':
    raise CheckpointError(f'{os.path.join(path, CONFIG)}: model_type {hf.get("model_type")!r} '
                          "is not supported; only 'vit' (ViTModel, ViTForImageClassification) is")
  return hf


def _read_one(path: str) -> dict[str, np.ndarray]:
  return safetensors_io.read(path)[0] if path.endswith('.safetensors') else read_pth(path)


def read_weights(path: str) -> dict[str, np.ndarray]:
  """The state dict of the directory's weights file, or of all its shards."""
  found = [n for n in WEIGHT_FILES if epath.Path(os.path.join(path, n)).is_file()]
  if not found:
    raise CheckpointError(f'{path}: no weights file; a Hugging Face directory holds one of '
                          f'{", ".join(WEIGHT_FILES)}')
  first = os.path.join(path, found[0])
  if not first.endswith('.index.json'):
    return _read_one(first)
  weight_map = _json(first).get('weight_map')
  if not isinstance(weight_map, dict) or not weight_map:
    raise CheckpointError(f'{first}: no weight_map; the index names the shard of every key')
  arrays: dict[str, np.ndarray] = {}
  for shard in sorted(set(weight_map.values())):
    if not epath.Path(os.path.join(path, shard)).is_file():
      raise CheckpointError(f'{first}: shard {shard} is missing from {path}')
    arrays.update(_read_one(os.path.join(path, shard)))
  absent = sorted(k for k in weight_map if k not in arrays)
  if absent:
    raise CheckpointError(f'{first}: {absent[0]} is not in its shard {weight_map[absent[0]]}')
  return arrays


def prefix_of(raw: dict[str, np.ndarray]) -> str:
  """ViTForImageClassification's backbone prefix if the file uses it, else ''."""
  return hf_layout.CLASSIFIER_PREFIX if any(
      k.startswith(hf_layout.CLASSIFIER_PREFIX) for k in raw) else ''


def _square(hf: dict, key: str, default: int, source: str) -> int:
  value = hf.get(key, default)
  if isinstance(value, (list, tuple)):
    if len(value) != 2 or value[0] != value[1]:
      raise CheckpointError(f'{source}: {key} {value} is not square; our ViT takes square ones')
    value = value[0]
  return int(value)


def _gelu_approximate(act: str, source: str) -> bool:
  if act in EXACT_GELU + TANH_GELU:
    return act in TANH_GELU
  raise CheckpointError(f'{source}: hidden_act {act!r} is not supported; GELU is: '
                        f'{", ".join(EXACT_GELU)} (exact) or {", ".join(TANH_GELU)} (tanh)')


def model_fields(hf: dict, raw: dict[str, np.ndarray], source: str) -> dict:
  """Our architecture fields from config.json (ViTConfig's defaults where it
  is silent) and the head and pooler the weights carry."""
  hidden, heads = int(hf.get('hidden_size', 768)), int(hf.get('num_attention_heads', 12))
  if hf.get('num_channels', 3) != 3:
    raise CheckpointError(f'{source}: num_channels {hf["num_channels"]}; our ViT takes RGB (3)')
  if hidden % heads or hf.get('head_dim', hidden // heads) != hidden // heads:
    raise CheckpointError(f'{source}: hidden_size {hidden} does not split into '
                          f'{heads} heads of head_dim {hf.get("head_dim", hidden / heads)}')
  head = raw.get('classifier.weight')
  labels = hf.get('id2label')
  if head is not None and labels is not None and len(labels) != head.shape[0]:
    raise CheckpointError(f'{source}: id2label has {len(labels)} labels but classifier.weight '
                          f'{head.shape[0]} rows')
  pooler = raw.get('pooler.dense.weight')  # ViTModel's; a classifier's backbone has none
  if pooler is not None and hf.get('pooler_act', 'tanh') != 'tanh':
    raise CheckpointError(f'{source}: pooler_act {hf["pooler_act"]!r}; our pre-logits layer '
                          "is Dense + 'tanh'")
  return dict(
      image_size=_square(hf, 'image_size', 224, source),
      patch_size=_square(hf, 'patch_size', 16, source),
      hidden_size=hidden, num_layers=int(hf.get('num_hidden_layers', 12)), num_heads=heads,
      mlp_dim=int(hf.get('intermediate_size', 3072)), qkv_bias=bool(hf.get('qkv_bias', True)),
      layer_norm_eps=float(hf.get('layer_norm_eps', 1e-12)),
      gelu_approximate=_gelu_approximate(hf.get('hidden_act', 'gelu'), source),
      dropout_rate=float(hf.get('hidden_dropout_prob', 0.0)),
      attention_dropout_rate=float(hf.get('attention_probs_dropout_prob', 0.0)),
      num_classes=int(head.shape[0]) if head is not None else 0,
      representation_size=int(pooler.shape[0]) if pooler is not None else None,
      attn_scale=None, classifier='token', posemb='learn', posemb_class_token=True, resnet=None,
      weights_file=None, weights_url=None, source='huggingface')


def _size(value: Any) -> Optional[tuple[str, int]]:
  """('square', n) or ('shorter', n) from a processor's size or crop_size."""
  if isinstance(value, int):  # the early ViTFeatureExtractor's square size
    return 'square', value
  if isinstance(value, dict):
    if value.get('height') and value.get('height') == value.get('width'):
      return 'square', int(value['height'])
    if value.get('shortest_edge') and not value.get('longest_edge'):
      return 'shorter', int(value['shortest_edge'])
  return None


def preprocessing_fields(path: str, image_size: int, log: Log) -> dict:
  """crop_pct, crop_mode, interpolation, mean and std as preprocessor_config.json
  gives them; what our eval transform cannot express is logged and left out."""
  source = os.path.join(path, PREPROCESSOR)
  if not epath.Path(source).is_file():
    return {}
  pp, out = _json(source), {}
  if pp.get('do_normalize', True):
    out.update(mean=tuple(pp.get('image_mean', (0.5,) * 3)),
               std=tuple(pp.get('image_std', (0.5,) * 3)))
  else:
    out.update(mean=(0.0,) * 3, std=(1.0,) * 3)
  if pp.get('resample', 2) in RESAMPLE:
    out['interpolation'] = RESAMPLE[pp.get('resample', 2)]
  else:
    log(f'{source}: resample {pp["resample"]} has no equivalent here; kept '
        'the base model\'s interpolation')
  if not pp.get('do_rescale', True) or not math.isclose(pp.get('rescale_factor', 1 / 255),
                                                        1 / 255):
    log(f'{source}: pixels are always scaled by 1/255 here, not as do_rescale/rescale_factor say')
  resize = _size(pp.get('size', {'height': 224, 'width': 224})) if pp.get('do_resize', True) \
      else None
  cropped = bool(pp.get('do_center_crop'))
  crop = _size(pp.get('crop_size')) if cropped else resize
  if resize is None or crop is None or crop[0] != 'square' or (
      not cropped and resize[0] == 'shorter'):
    log(f'{source}: its resize and crop (size {pp.get("size")}, crop_size '
        f'{pp.get("crop_size")}) give no fixed square input; kept the base model\'s crop')
    return out
  final = crop[1]
  if final != image_size:
    log(f'{source}: the processor gives {final}x{final} images, the model takes {image_size}; '
        'the crop ratio is kept at the model\'s image_size')
  crop_pct = final / resize[1]
  if math.floor(final / crop_pct) < resize[1]:  # the division rounded down: one ulp less
    crop_pct = math.nextafter(crop_pct, 0.0)
  out.update(crop_pct=crop_pct, crop_mode='squash' if resize[0] == 'square' else 'center')
  return out


def base_model(fields: dict) -> str:
  """The registered plain ViT with the file's shape, the same image size and
  pre-logits preferred; FALLBACK_BASE if none has it."""
  return registry.model_of_shape(fields, ('posemb', 'image_size', 'representation_size'),
                                 FALLBACK_BASE)


def _conflict(source: str, key: str, want: Any, who: str, got: Any) -> CheckpointError:
  if key == 'resnet':
    return CheckpointError(f'{source}: a Hugging Face ViT has no ResNet stem (transformers has '
                           f'no ViT-hybrid model); {who} asks for the R50 hybrid')
  return CheckpointError(f'{source}: config.json and the weights give {key} {want!r}, {who} '
                         f'has {got!r}; leave it out: the architecture comes from config.json')


def target_config(path: str, raw: dict[str, np.ndarray], model_name: Optional[str],
                  overrides: dict, log: Log) -> ml_collections.ConfigDict:
  """The model config of an HF directory: config.json's fields over the
  registered base model (`model_name` if given), then `overrides`."""
  hf = read_config(path)
  source = os.path.join(path, CONFIG)
  fields = model_fields(hf, raw, source)
  fields.update(preprocessing_fields(path, fields['image_size'], log))
  base = model_name or base_model(fields)
  named = registry.get_model_config(base)
  for key in FIXED:
    claims = [(f'model {base}', named[key])] if model_name else []
    if key in overrides:
      claims.append((f'the override {key}={overrides[key]}', overrides[key]))
    for who, value in claims:
      value = tuple(value) if isinstance(value, list) else value
      if value != fields[key]:
        raise _conflict(source, key, fields[key], who, value)
  return registry.get_model_config(base, **{**fields, **overrides})


# --- writing -------------------------------------------------------------

def check_writable(cfg: ml_collections.ConfigDict) -> None:
  """One line for each thing transformers' ViT cannot express."""
  what = f'model {cfg.name} cannot be written for transformers:'
  head_scale = (cfg.hidden_size // cfg.num_heads) ** -0.5
  if cfg.resnet is not None:
    raise CheckpointError(f'{what} transformers has no ViT-hybrid (R50+ViT) model; write .pth, '
                          '.safetensors, .npz or orbax')
  if registry.custom_attn_scale(cfg):
    raise CheckpointError(f'{what} its attention scale {cfg.attn_scale:.6g} is not head_dim ** '
                          f'-0.5 = {head_scale:.6g}, the only one transformers\' ViT uses')
  if cfg.classifier != 'token':
    raise CheckpointError(f"{what} classifier {cfg.classifier!r}: transformers' ViT classifies "
                          'the class token')
  if cfg.posemb != 'learn' or not cfg.posemb_class_token:
    raise CheckpointError(f"{what} posemb {cfg.posemb!r}, posemb_class_token="
                          f"{cfg.posemb_class_token}: transformers' ViT learns position "
                          'embeddings with a slot for the class token')
  if cfg.representation_size is not None and cfg.num_classes:
    raise CheckpointError(f'{what} ViTForImageClassification has no pre-logits layer before its '
                          'head; --num-classes 0 writes a ViTModel whose pooler is that layer')


def _labels(num_classes: int) -> list[str]:
  if num_classes == 1000:
    text = resources.files('vit_jax.data').joinpath('imagenet_classes.txt').read_text()
    return text.splitlines()
  return [f'LABEL_{i}' for i in range(num_classes)]


def config_json(cfg: ml_collections.ConfigDict) -> dict:
  """config.json with the keys `save_pretrained` writes (no transformers_version:
  no transformers wrote it); a ViTModel's has no labels."""
  labels = _labels(cfg.num_classes)
  out = {
      'architectures': ['ViTForImageClassification' if cfg.num_classes else 'ViTModel'],
      'attention_probs_dropout_prob': cfg.attention_dropout_rate, 'dtype': 'float32',
      'encoder_stride': cfg.patch_size,
      'hidden_act': TANH_GELU[0] if cfg.gelu_approximate else EXACT_GELU[0],
      'hidden_dropout_prob': cfg.dropout_rate, 'hidden_size': cfg.hidden_size,
      'image_size': cfg.image_size, 'initializer_range': 0.02, 'intermediate_size': cfg.mlp_dim,
      'layer_norm_eps': cfg.layer_norm_eps, 'model_type': 'vit',
      'num_attention_heads': cfg.num_heads, 'num_channels': 3,
      'num_hidden_layers': cfg.num_layers, 'patch_size': cfg.patch_size, 'pooler_act': 'tanh',
      'pooler_output_size': cfg.representation_size or cfg.hidden_size,
      'qkv_bias': cfg.qkv_bias,
  }
  if labels:
    out.update(id2label={str(i): n for i, n in enumerate(labels)},
               label2id={n: i for i, n in enumerate(labels)})
  return dict(sorted(out.items()))


def preprocessor_json(cfg: ml_collections.ConfigDict) -> dict:
  """Our eval transform for ViTImageProcessor: 'squash' is a square resize,
  'center' a shorter-side resize; either then centre-crops to image_size
  unless the resize already gives it."""
  scale = math.floor(cfg.image_size / cfg.crop_pct)
  squash = cfg.crop_mode == 'squash'
  out = {'image_processor_type': 'ViTImageProcessor', 'do_resize': True,
         'size': {'height': scale, 'width': scale} if squash else {'shortest_edge': scale},
         'resample': {v: k for k, v in RESAMPLE.items()}[cfg.interpolation],
         'do_center_crop': not squash or scale != cfg.image_size,
         'do_rescale': True, 'rescale_factor': 1 / 255, 'do_normalize': True,
         'image_mean': list(cfg.mean), 'image_std': list(cfg.std)}
  if out['do_center_crop']:
    out['crop_size'] = {'height': cfg.image_size, 'width': cfg.image_size}
  return out


def write(path: str, flat: dict[str, np.ndarray], cfg: ml_collections.ConfigDict) -> None:
  """A new directory, complete or not at all (`storage.new_directory`)."""
  check_writable(cfg)
  prefix = hf_layout.CLASSIFIER_PREFIX if cfg.num_classes else ''
  arrays = timm_layout.to_timm(flat, hf_layout.rules(cfg, prefix))
  with storage.new_directory(path) as out:
    out.mkdir(parents=True)
    (out / WEIGHTS).write_bytes(save(arrays, metadata={'format': 'pt'}))
    for name, content in ((PREPROCESSOR, preprocessor_json(cfg)), (CONFIG, config_json(cfg))):
      (out / name).write_text(json.dumps(content, indent=2) + '\n')
