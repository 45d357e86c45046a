"""Mixup and CutMix on 4 simulated CPU devices, 3 rows each: 256 steps'
mixing of one batch (written to an .npz), the collectives of that compiled
mixing and of the compiled training step with both on.

Run in its own process (the simulated device count must be set before jax
is imported): python mixing_devices.py OUT.npz -> prints one JSON line.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))
if 'device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=4')
import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import quickstart  # noqa: E402
from vit_jax import parallel  # noqa: E402
from vit_jax.train.config_keys import Mixing  # noqa: E402
from vit_jax.train.mixing import make_mixer  # noqa: E402
from vit_jax.train.program import build, model_config_of  # noqa: E402

COLLECTIVES = ('all-reduce', 'all-gather', 'collective-permute', 'all-to-all',
               'reduce-scatter', 'send', 'recv')
# what the mixing does: mixup 0.4, cutmix 1.0, half the mixing steps CutMix,
# 80% of the steps mixing at all; 5 classes, label smoothing 0.1
MIXING = Mixing(mixup=0.4, cutmix=1.0, switch_prob=0.5, prob=0.8)
CLASSES, SMOOTHING, STEPS = 5, 0.1, 256


def collectives(hlo: str) -> dict:
  return {op: len(re.findall(rf'\b{op}(?:-start)?\(', hlo)) for op in COLLECTIVES}


def step_collectives() -> dict:
  """Those of the training step of a tiny quickstart model, Mixup and CutMix on."""
  config = quickstart.get_config()
  config.update(dict(image_size=16, batch_size=8, total_steps=4, warmup_steps=1,
                     mixup=MIXING.mixup, cutmix=MIXING.cutmix))
  config.model_overrides = dict(config.model_overrides, patch_size=8, hidden_size=16,
                                num_layers=1, num_heads=2, mlp_dim=32)
  program = build(config, model_config_of(config))
  compiled = program.step.lower(program.abstract_state, *program.abstract_batch()).compile()
  return collectives(compiled.as_text())


def main(out: str) -> None:
  mesh = parallel.make_mesh()
  rows = parallel.batch_sharding(mesh)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (12, 5, 7, 3)).astype(np.uint8)
  labels = np.array([0, 1, 2, 3, 4, 1, 2, 3, 4, 0, 1, 2], np.int32)
  keys = jax.random.split(jax.random.PRNGKey(0), STEPS)
  mixing = jax.jit(jax.vmap(make_mixer(MIXING, CLASSES, SMOOTHING, mesh), in_axes=(0, None, None)))
  args = (keys, jax.device_put(images, rows), jax.device_put(labels, rows))
  compiled = mixing.lower(*args).compile()
  mixed, targets = compiled(*args)
  np.savez(out, images=images, labels=labels, mixed=np.asarray(mixed),
           targets=np.asarray(targets))
  print(json.dumps({'devices': jax.device_count(),
                    'mixing_collectives': collectives(compiled.as_text()),
                    'step_collectives': step_collectives()}))


if __name__ == '__main__':
  main(sys.argv[1])
