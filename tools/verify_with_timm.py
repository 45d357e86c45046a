"""Check, with real timm installed, that files we write load into timm.

Not part of the test suite (timm and torch are not dependencies). Run in an
environment that has torch, timm and this package importable:

    python tools/verify_with_timm.py [--full vit_base_patch16_224 ...]

For the small twin of each card model it converts our parameters to `.pth`
and `.safetensors`, loads each into the timm model with `strict=True`
(`torch.load(weights_only=True)` for `.pth`) and compares logits with ours.
With `--full NAME` it also round-trips a full-size randomly initialised timm
model: timm state dict -> our loader -> our writer -> timm, bit for bit; and
compares the logits our loader's parameters give with timm's, on the path
one CPU device takes (the CPU kernels) and on two simulated devices (XLA,
the batch sharded), each in a process of its own.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
from conftest import CARD_MODELS, data_path, timm_twin  # noqa: E402
from vit_jax.models import registry  # noqa: E402
from vit_jax.checkpoints import load_params, save_params  # noqa: E402
from vit_jax.bench.timm_reference import timm_model  # noqa: E402


def check_twin(name, tmp):
  overrides, io = timm_twin(name)
  cfg, params = load_params(data_path('timm', f'{name}.pth'), name, **overrides)
  ours = np.asarray(registry.module_from_config(cfg).apply({'params': params}, io['input_nhwc']))
  for ext in ('pth', 'safetensors'):
    path = os.path.join(tmp, f'{name}.{ext}')
    save_params(path, params, cfg)
    sd = torch.load(path, weights_only=True) if ext == 'pth' else load_file(path)
    model = timm_model(cfg)
    model.load_state_dict(sd, strict=True)
    with torch.no_grad():
      theirs = model(torch.from_numpy(io['input_nhwc'].transpose(0, 3, 1, 2).copy())).numpy()
    diff = np.abs(theirs - ours).max()
    print(f'{name:24s} {ext:12s} strict load ok, max |logit diff| {diff:.2e}')


def our_logits(pth, name, images, out, devices):
  """Logits of the eval step on `devices` simulated CPU devices (this
  process's XLA_FLAGS say how many), saved to `out`."""
  import jax
  from vit_jax import parallel
  from vit_jax.eval.evaluate import make_eval_step
  assert jax.device_count() == devices, jax.devices()
  cfg, params = load_params(pth, name)
  mesh = parallel.make_mesh()
  step = make_eval_step(registry.module_from_config(cfg), cfg.mean, cfg.std, mesh.devices.flat)
  x = np.load(images)
  batch = parallel.global_batch(mesh, {'image': x, 'label': np.zeros(len(x), np.int32),
                                       'valid': np.ones(len(x), bool),
                                       'skipped': np.zeros(len(x), bool)})
  totals = {k: jax.numpy.zeros(()) for k in ('count', 'loss', 'top1', 'top5', 'skipped')}
  _, logits = step(params, totals, batch['image'], batch['label'], batch['valid'],
                   batch['skipped'])
  np.save(out, np.asarray(logits))


def check_logits(name, cfg, model, src, tmp):
  import subprocess
  rng = np.random.RandomState(0)
  images = rng.randint(0, 256, (4, cfg.image_size, cfg.image_size, 3)).astype(np.uint8)
  np.save(os.path.join(tmp, 'images.npy'), images)
  x = (images.astype(np.float32) / 255 - np.asarray(cfg.mean)) / np.asarray(cfg.std)
  with torch.no_grad():
    theirs = model(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
  for devices in (1, 2):
    out = os.path.join(tmp, f'logits{devices}.npy')
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
    subprocess.run([sys.executable, __file__, '--ours', src, name,
                    os.path.join(tmp, 'images.npy'), out, str(devices)], env=env, check=True)
    ours = np.load(out)
    rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
    path = 'CPU kernels' if devices == 1 else 'XLA, batch sharded'
    print(f'{name:24s} full size, {devices} device(s) ({path}): max |logit diff| / max |logit| '
          f'{rel:.2e}')


def check_full(name, tmp):
  cfg = registry.get_model_config(name)
  model = timm_model(cfg)
  src, dst = os.path.join(tmp, 'src.pth'), os.path.join(tmp, 'dst.pth')
  torch.save(model.state_dict(), src)
  check_logits(name, cfg, model.eval(), src, tmp)
  _, params = load_params(src, name)
  save_params(dst, params, cfg)
  back = torch.load(dst, weights_only=True)
  fresh = timm_model(cfg)
  fresh.load_state_dict(back, strict=True)
  same = all(torch.equal(v, back[k]) for k, v in model.state_dict().items())
  print(f'{name:24s} full size: {len(back)} tensors, strict load ok, bit-identical: {same}')


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--full', nargs='*', default=[])
  p.add_argument('--ours', nargs=5, metavar=('PTH', 'NAME', 'IMAGES', 'OUT', 'DEVICES'),
                 help='(internal) our logits in a process of its own')
  args = p.parse_args()
  if args.ours:
    pth, name, images, out, devices = args.ours
    return our_logits(pth, name, images, out, int(devices))
  with tempfile.TemporaryDirectory() as tmp:
    for name in CARD_MODELS:
      check_twin(name, tmp)
    for name in args.full:
      check_full(name, tmp)


if __name__ == '__main__':
  main()
