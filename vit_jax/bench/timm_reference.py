"""The timm model that matches one of our configs, for comparisons.

Needs torch and timm (not dependencies of this package): used by the
benchmark's `--compare timm` and by `tools/verify_with_timm.py`. The hybrid
gets the card-era weight standardisation, (w - mean) / (std + 1e-5), which
is what the released weights and Google's code use.
"""
from __future__ import annotations

import functools

import ml_collections


def _card_std_conv_forward(self, x):
  import torch.nn.functional as F
  from timm.layers.padding import pad_same
  if self.same_pad:
    x = pad_same(x, self.kernel_size, self.stride, self.dilation)
  w = self.weight
  mean = w.mean(dim=(1, 2, 3), keepdim=True)
  std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
  return F.conv2d(x, (w - mean) / (std + 1e-5), self.bias, self.stride, self.padding,
                  self.dilation, self.groups)


def timm_model(cfg: ml_collections.ConfigDict):
  """A timm VisionTransformer (eval mode) with the structure of `cfg`."""
  import torch
  from timm.layers import std_conv
  from timm.models.vision_transformer import VisionTransformer
  from timm.models.vision_transformer_hybrid import HybridEmbed, _resnetv2
  std_conv.StdConv2dSame.forward = _card_std_conv_forward
  kw = dict(img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.hidden_size,
            depth=cfg.num_layers, num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_dim / cfg.hidden_size, qkv_bias=cfg.qkv_bias,
            num_classes=cfg.num_classes,
            global_pool='token' if cfg.classifier == 'token' else 'avg',
            class_token=cfg.classifier == 'token',
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=cfg.layer_norm_eps))
  if cfg.resnet is not None:
    backbone = _resnetv2(tuple(cfg.resnet))
    kw['embed_layer'] = lambda *a, **k: HybridEmbed(backbone=backbone, *a, **k)
  model = VisionTransformer(**kw).eval()
  if cfg.attn_scale is not None:
    for blk in model.blocks:
      blk.attn.scale = cfg.attn_scale
      blk.attn.fused_attn = False  # the fused path ignores a custom scale
  return model
