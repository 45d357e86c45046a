"""Make the Hugging Face fixtures under tests/fixtures/hf with real transformers.

Not part of the test suite (torch, timm and transformers are not
dependencies). Run where they are installed:

    python tools/make_hf_fixtures.py

Small random-weight twins, every parameter drawn at random (LayerNorm scale
and bias, biases, class token and position embedding included), saved by
`save_pretrained`:
  vit_cls/      ViTForImageClassification, 10 labels, exact GELU, with the
                preprocessor_config.json of a ViTImageProcessor
  vit_pooler/   ViTModel with its pooler (pooler_output_size 40), tanh GELU,
                no q/k/v bias
  vit_bin/      vit_cls's weights as pytorch_model.bin: transformers 5 writes
                only safetensors, so this is `torch.save` of the state dict
                save_pretrained wrote, as transformers 4 saved it
  vit_sharded/  vit_cls saved with a small max_shard_size (an index, shards)
io.npz holds the NHWC input and each twin's outputs; every directory is
loaded back with from_pretrained (no missing, unexpected or mismatched key)
and must reproduce them. squash_crops.json holds the SHA-256 of timm's
'squash' eval crops of the synthetic photos in tests/conftest.py.
"""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from timm.data.transforms_factory import transforms_imagenet_eval
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor, ViTModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
from conftest import SQUASH_SETTINGS, data_path, synthetic_photos  # noqa: E402

OUT = data_path('hf')
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             image_size=32, patch_size=8, encoder_stride=8)


def randomise(model: torch.nn.Module, seed: int) -> None:
  """Every parameter random: norms' scales near 1, all else around 0."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      p.copy_(1 + 0.2 * noise if 'layernorm' in name and name.endswith('weight')
              else 0.3 * noise)


def loaded(cls, path: str, **kw):
  model, info = cls.from_pretrained(path, output_loading_info=True, **kw)
  problems = {k: v for k, v in info.items() if v and k != 'error_msgs'}
  assert not problems and not info.get('error_msgs'), (path, info)
  return model.eval()


def twin_cls(x: torch.Tensor, io: dict) -> None:
  cfg = ViTConfig(**SMALL, num_labels=10, hidden_act='gelu', layer_norm_eps=1e-12)
  model = ViTForImageClassification(cfg).eval()
  randomise(model, 0)
  with torch.no_grad():
    io['cls_logits'] = model(x).logits.numpy()
    io['cls_class_token'] = model.vit(x).last_hidden_state[:, 0].numpy()
  model.save_pretrained(os.path.join(OUT, 'vit_cls'))
  ViTImageProcessor(size={'height': 32, 'width': 32}, resample=2, image_mean=[0.5] * 3,
                    image_std=[0.5] * 3).save_pretrained(os.path.join(OUT, 'vit_cls'))
  model.save_pretrained(os.path.join(OUT, 'vit_sharded'), max_shard_size='40KB')
  os.makedirs(os.path.join(OUT, 'vit_bin'))
  shutil.copy(os.path.join(OUT, 'vit_cls', 'config.json'), os.path.join(OUT, 'vit_bin'))
  torch.save(load_file(os.path.join(OUT, 'vit_cls', 'model.safetensors')),
             os.path.join(OUT, 'vit_bin', 'pytorch_model.bin'))
  for name in ('vit_cls', 'vit_sharded', 'vit_bin'):
    with torch.no_grad():
      got = loaded(ViTForImageClassification, os.path.join(OUT, name))(x).logits.numpy()
    np.testing.assert_array_equal(got, io['cls_logits'], err_msg=name)


def twin_pooler(x: torch.Tensor, io: dict) -> None:
  cfg = ViTConfig(**SMALL, hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6, qkv_bias=False,
                  pooler_output_size=40)
  model = ViTModel(cfg, add_pooling_layer=True).eval()
  randomise(model, 1)
  with torch.no_grad():
    out = model(x)
  io['pooler_output'] = out.pooler_output.numpy()
  io['pooler_class_token'] = out.last_hidden_state[:, 0].numpy()
  model.save_pretrained(os.path.join(OUT, 'vit_pooler'))
  with torch.no_grad():
    again = loaded(ViTModel, os.path.join(OUT, 'vit_pooler'))(x).pooler_output.numpy()
  np.testing.assert_array_equal(again, io['pooler_output'])


def squash_digests() -> dict:
  out = {}
  for ident, img in synthetic_photos():
    for key, (size, crop_pct, interpolation) in SQUASH_SETTINGS.items():
      t = transforms_imagenet_eval(img_size=size, crop_pct=crop_pct, crop_mode='squash',
                                   interpolation=interpolation)
      crop = img
      for step in t.transforms[:2]:  # Resize((s, s)) and CenterCrop; PIL images still
        crop = step(crop)
      out.setdefault(ident, {})[key] = hashlib.sha256(np.asarray(crop).tobytes()).hexdigest()
  return out


def main() -> None:
  shutil.rmtree(OUT, ignore_errors=True)
  os.makedirs(OUT)
  x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
  io = {'input_nhwc': x.numpy().transpose(0, 2, 3, 1)}
  twin_cls(x, io)
  twin_pooler(x, io)
  np.savez(os.path.join(OUT, 'io.npz'), **io)
  with open(os.path.join(OUT, 'squash_crops.json'), 'w') as f:
    json.dump(squash_digests(), f, indent=1)
  total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(OUT) for n in ns)
  print(f'wrote {OUT}: {total / 1e6:.2f} MB')


if __name__ == '__main__':
  main()
