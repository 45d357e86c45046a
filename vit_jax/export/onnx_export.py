"""The ONNX route: a graph written from the parameters with `onnx`'s helpers.

Why not a JAX-to-ONNX converter: `jax2onnx` (the maintained one) pins
`orbax-checkpoint<0.11.37`, older than ours, and reads the hybrid's raw
convolution kernels, skipping the weight standardisation (wrong logits, no
error). A ViT is a dozen operation types, written here one module of the
model at a time (`onnx_graph`, `onnx_resnet`), float32 throughout (bfloat16
graphs do not load in ONNX Runtime's CPU provider).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import ml_collections
import numpy as np
import onnx
from flax import traverse_util

from vit_jax.export import onnx_graph, onnx_resnet
from vit_jax.models import registry

# Model config fields the graph expresses; those that change nothing at
# inference; and those that describe the input, not the network.
EXPRESSED = ('num_classes', 'patch_size', 'hidden_size', 'num_layers', 'num_heads', 'mlp_dim',
             'qkv_bias', 'attn_scale', 'gelu_approximate', 'layer_norm_eps',
             'representation_size', 'classifier', 'posemb', 'posemb_class_token', 'resnet',
             'group_norm_eps', 'image_size')
TRAINING_ONLY = ('dropout_rate', 'attention_dropout_rate', 'drop_path_rate', 'head_bias_init',
                 'head_zeroinit', 'remat', 'remat_policy', 'scan_layers', 'dtype')
DESCRIPTIVE = ('name', 'crop_pct', 'crop_mode', 'interpolation', 'mean', 'std', 'weights_file',
               'weights_url', 'source')
# the model's choices the graph writes (a new one is refused until written here)
CLASSIFIERS = ('token', 'gap', 'map', '0')
POSEMBS = ('learn', 'sincos2d')
PLAIN = 'vit_base_patch16_224'  # any other field must keep this model's value
# A protobuf message holds at most 2 GiB: larger weights (ViT-H/14's 2.5 GB)
# go to one external data file beside the graph (`DST.data`), as
# onnx.save_model writes it; up to this size the .onnx file is whole.
EXTERNAL_DATA_BYTES = 1800 << 20


def check_expressible(cfg: ml_collections.ConfigDict) -> None:
  """One line naming the first field the ONNX graph cannot express."""
  what = f'model {cfg.name} cannot be written as ONNX:'
  if cfg.classifier not in CLASSIFIERS:
    raise ValueError(f'{what} classifier {cfg.classifier!r} (the ONNX writer has '
                     f'{", ".join(map(repr, CLASSIFIERS))}); use --to jax-export')
  if cfg.posemb not in POSEMBS:
    raise ValueError(f'{what} posemb {cfg.posemb!r} (the ONNX writer has '
                     f'{", ".join(map(repr, POSEMBS))}); use --to jax-export')
  plain = registry.get_model_config(PLAIN)
  known = set(EXPRESSED + TRAINING_ONLY + DESCRIPTIVE)
  for field in sorted(cfg.keys()):
    if field not in known and cfg[field] != plain.get(field):
      raise ValueError(f'{what} field {field}={cfg[field]!r} is not expressed by the ONNX writer '
                       f'(it writes {field}={plain.get(field)!r} only); use --to jax-export')


def build(cfg: ml_collections.ConfigDict, params: Any, info: dict) -> onnx.ModelProto:
  """The graph: images (batch, S, S, 3) float32 NHWC -> logits (batch, classes);
  `info` (preprocessing, class names) rides in its metadata."""
  check_expressible(cfg)
  flat = {k: np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(params, sep='/').items()}
  g = onnx_graph.GraphBuilder(flat)
  x = g.op('Transpose', ['images'], 'images_nchw', perm=[0, 3, 1, 2])
  size = cfg.image_size
  if cfg.resnet is not None:
    stem = onnx_resnet.Stem(g, onnx_resnet.standardized_kernels(flat), cfg.group_norm_eps, size)
    x = stem(x, tuple(cfg.resnet))
    size = stem.size
  p = cfg.patch_size
  grid = size // p
  x = g.op('Conv', [x, g.param('embedding/kernel', flat['embedding/kernel'].transpose(3, 2, 0, 1)),
                    g.param('embedding/bias')], 'embedding/out', kernel_shape=[p, p],
           strides=[p, p])
  x = g.op('Reshape', [x, g.const([0, cfg.hidden_size, grid * grid], 'patch_tokens_shape',
                                  np.int64)], 'patch_tokens_nct')
  x = g.op('Transpose', [x], 'patch_tokens', perm=[0, 2, 1])
  out_name = info['output']['name']
  x = g.op('Identity', [onnx_graph.tokens_to_logits(g, x, cfg, grid)], out_name)
  left = sorted(set(flat) - g.consumed)
  if left:
    raise ValueError(f'model {cfg.name} cannot be written as ONNX: parameters {left[:4]} are '
                     'not expressed by the ONNX writer; use --to jax-export')
  width = cfg.num_classes or onnx_graph.pre_logits_width(cfg) or cfg.hidden_size
  s = cfg.image_size
  model = g.model([onnx_graph.tensor_info('images', ['batch', s, s, 3])],
                  [onnx_graph.tensor_info(out_name, ['batch', width])], cfg.name,
                  doc=f'{cfg.name}: {info["description"]}')
  onnx.helper.set_model_props(model, {'vit_jax': json.dumps(info)})
  return model


def weight_bytes(model: onnx.ModelProto) -> int:
  return sum(len(t.raw_data) for t in model.graph.initializer)


def serialize(model: onnx.ModelProto, data_name: str) -> dict[str, bytes]:
  """{'': the .onnx file's bytes} and, for weights over EXTERNAL_DATA_BYTES,
  {'.data': the external data file's}, referenced as `data_name`."""
  if weight_bytes(model) <= EXTERNAL_DATA_BYTES:
    onnx.checker.check_model(model)
    return {'': model.SerializeToString()}
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'model.onnx')
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    onnx.checker.check_model(path)
    with open(path, 'rb') as f, open(os.path.join(tmp, data_name), 'rb') as d:
      return {'': f.read(), '.data': d.read()}
