"""Hugging Face transformers' ViT state-dict layout <-> our parameter tree.

The names are the ones `save_pretrained` writes (transformers 5 renames its
modules in memory but still saves these). `ViTForImageClassification` puts
the backbone under `vit.` and the head at `classifier`; `ViTModel` has no
prefix and may carry `pooler.dense` (Dense + tanh on the class token: our
`pre_logits`). q, k and v are separate Linears, so no split is needed. The
rule machinery of timm_layout serves this table in both directions.
"""
from __future__ import annotations

import ml_collections

from vit_jax.checkpoints.timm_layout import (Rule, conv_to_ours, conv_to_torch, from_heads,
                                             linear, norm, out_proj, rule, to_heads)

CLASSIFIER_PREFIX = 'vit.'  # ViTForImageClassification's backbone; ViTModel has none


def _heads_linear(key: str, ours: str, width: int, heads: int, bias: bool) -> list[Rule]:
  split, join = to_heads(width, heads), from_heads(width)
  out = [rule(f'{key}.weight', f'{ours}/kernel', lambda a: [split(a[0])],
              lambda a: [join(a[0])])]
  if bias:
    out.append(rule(f'{key}.bias', f'{ours}/bias', lambda a: [a[0].reshape(heads, -1)],
                    lambda a: [a[0].reshape(-1)]))
  return out


def rules(cfg: ml_collections.ConfigDict, prefix: str) -> list[Rule]:
  """The table for a plain ViT config, in `save_pretrained`'s order; `prefix`
  is CLASSIFIER_PREFIX for ViTForImageClassification, '' for ViTModel."""
  width, heads, p = cfg.hidden_size, cfg.num_heads, prefix
  out = [rule(f'{p}embeddings.cls_token', 'cls'),
         rule(f'{p}embeddings.position_embeddings', 'Transformer/posembed_input/pos_embedding'),
         rule(f'{p}embeddings.patch_embeddings.projection.weight', 'embedding/kernel',
              conv_to_ours, conv_to_torch),
         rule(f'{p}embeddings.patch_embeddings.projection.bias', 'embedding/bias')]
  for i in range(cfg.num_layers):
    t, o = f'{p}encoder.layer.{i}', f'Transformer/encoderblock_{i}'
    attn = f'{o}/MultiHeadDotProductAttention_0'
    for name in ('query', 'key', 'value'):
      out += _heads_linear(f'{t}.attention.attention.{name}', f'{attn}/{name}', width, heads,
                           cfg.qkv_bias)
    out += out_proj(f'{t}.attention.output.dense', attn, width, heads)
    out += linear(f'{t}.intermediate.dense', f'{o}/MlpBlock_0/Dense_0')
    out += linear(f'{t}.output.dense', f'{o}/MlpBlock_0/Dense_1')
    out += norm(f'{t}.layernorm_before', f'{o}/LayerNorm_0')
    out += norm(f'{t}.layernorm_after', f'{o}/LayerNorm_1')
  out += norm(f'{p}layernorm', 'Transformer/encoder_norm')
  if cfg.representation_size is not None:
    out += linear(f'{p}pooler.dense', 'pre_logits')
  if cfg.num_classes:
    out += linear('classifier', 'head')
  return out
