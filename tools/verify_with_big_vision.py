"""Check, with big_vision's own code, that files we write with `--to big_vision`
restore strictly into its model and give our logits.

Not part of the test suite. Two steps, in two environments:

    # 1. here (vit_jax installed): write the files, our logits beside them
    python tools/verify_with_big_vision.py write DIR [--full]
    # 2. where big_vision's requirements are installed (no vit_jax needed)
    python tools/verify_with_big_vision.py check DIR --big_vision PATH/TO/checkout

`write` makes random-weight twins of our configs big_vision can express (the
official layout's class slot, big_vision's own options, each pooling) and,
with `--full`, the registered vit_s16_i1k_90ep at full size; for each it
saves `NAME.npz` (our `--to big_vision` output), `NAME.json` (big_vision's
`vit.Model` arguments, printed by convert too) and `NAME.io.npz` (input,
our logits). `check` restores each file with `vit.load` (strict: the same
tree or an error) into `vit.Model(**arguments)` and prints the largest logit
difference relative to the largest logit.
"""
import argparse
import json
import os
import sys

import numpy as np

TWIN = dict(patch_size=4, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32, num_classes=10,
            image_size=16)
CASES = {  # name: (registered base, overrides)
    'official_token_slot': ('vit_base_patch32_224', TWIN),
    'token_no_slot': ('vit_s16_i1k_90ep', dict(TWIN, classifier='token', posemb='learn')),
    'gap_sincos2d_rep': ('vit_s16_i1k_90ep', TWIN),
    'map_rep24': ('vit_s16_i1k_90ep', dict(TWIN, classifier='map', posemb='learn',
                                           representation_size=24)),
    'first_token_scan': ('vit_s16_i1k_90ep', dict(TWIN, classifier='0', posemb='learn',
                                                  representation_size=None, num_layers=3,
                                                  scan_layers=True)),
}


def write(out_dir, full):
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
  import jax
  from flax import traverse_util
  from vit_jax.checkpoints import big_vision_layout, save_params
  from vit_jax.checkpoints.formats import expected_shapes
  from vit_jax.checkpoints.scan_layout import stack_blocks
  from vit_jax.models import registry
  cases = dict(CASES)
  if full:
    cases['vit_s16_i1k_90ep'] = ('vit_s16_i1k_90ep', {})
  os.makedirs(out_dir, exist_ok=True)
  for name, (base, overrides) in cases.items():
    cfg = registry.get_model_config(base, **overrides)
    rng = np.random.RandomState(0)
    flat = {k: (rng.standard_normal(s) / np.sqrt(s[0] if len(s) > 1 else 10)).astype(np.float32)
            for k, s in expected_shapes(cfg).items()}
    params = traverse_util.unflatten_dict(flat, sep='/')
    if cfg.scan_layers:
      params = stack_blocks(params)
    x = rng.uniform(-1, 1, (2, cfg.image_size, cfg.image_size, 3)).astype(np.float32)
    model = registry.module_from_config(cfg)
    logits = np.asarray(jax.jit(lambda p, x: model.apply({'params': p}, x))(params, x))
    save_params(os.path.join(out_dir, f'{name}.npz'), params, cfg, 'big_vision')
    with open(os.path.join(out_dir, f'{name}.json'), 'w') as f:
      json.dump(dict(model=big_vision_layout.model_kwargs(cfg), image_size=cfg.image_size), f)
    np.savez(os.path.join(out_dir, f'{name}.io.npz'), input=x, logits=logits)
    print(f'wrote {name}')


def check(out_dir, big_vision):
  sys.path.insert(0, os.path.abspath(big_vision))
  import jax
  from big_vision.models import vit
  worst = 0.0
  for name in sorted(f[:-5] for f in os.listdir(out_dir) if f.endswith('.json')):
    with open(os.path.join(out_dir, f'{name}.json')) as f:
      meta = json.load(f)
    kwargs = dict(meta['model'], patch_size=tuple(meta['model']['patch_size']))
    model = vit.Model(**kwargs)
    io = np.load(os.path.join(out_dir, f'{name}.io.npz'))
    x = io['input']
    init = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)['params']
    params = vit.load(init, os.path.abspath(os.path.join(out_dir, f'{name}.npz')), kwargs)
    logits, _ = jax.jit(lambda p, x: model.apply({'params': p}, x))(params, x)
    rel = float(np.abs(np.asarray(logits) - io['logits']).max() / np.abs(io['logits']).max())
    worst = max(worst, rel)
    print(f'{name:22s} restored strictly by vit.load; logits within {rel:.1e} of ours')
  print(f'worst: {worst:.1e}')
  return 0 if worst <= 1e-5 else 1


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('step', choices=('write', 'check'))
  p.add_argument('dir')
  p.add_argument('--full', action='store_true', help='also the full-size vit_s16_i1k_90ep')
  p.add_argument('--big_vision', help='a checkout of google-research/big_vision (check)')
  args = p.parse_args()
  if args.step == 'write':
    write(args.dir, args.full)
    return 0
  return check(args.dir, args.big_vision)


if __name__ == '__main__':
  sys.exit(main())
