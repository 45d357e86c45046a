"""Benchmark: images/s, step time, TFLOP/s and model FLOP utilisation.

    python -m vit_jax.bench --model vit_base_patch16_224 --batch 8 --dtype float32 \
        --mode infer [--compare timm] [--compare official --official-checkout PATH]

Times the jitted step on the devices at hand (warm-up excluded, median of
several repetitions). Model FLOPs come from XLA's cost analysis of our
compiled step (what the output needs: the last block of a class-token model
computes the class token only) and rate every implementation, so their MFU
ratios are speed ratios; utilisation is against the peak measured in the
same process (a large matmul in float32 on CPU, bfloat16 on accelerators)
and, for known GPUs, the datasheet's dense bf16 peak. `--compare timm` runs
the same model in timm (PyTorch eager, and torch.compile where it works) in
the same run; `--compare official` the official Flax model from a checkout
of google-research/vision_transformer, jitted the same way.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from vit_jax import registry, xla_flags

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the datasheets.
DATASHEET_BF16_TFLOPS = {'H100': 989.0, 'H200': 989.0, 'A100': 312.0}


@dataclasses.dataclass
class Result:
  name: str
  seconds: float          # median step time
  batch: int
  flops: Optional[float]  # per step

  def line(self, peak_tflops: float) -> str:
    ips = self.batch / self.seconds
    text = f'{self.name:34s} {self.seconds * 1e3:9.1f} ms  {ips:9.1f} img/s'
    if self.flops:
      tflops = self.flops / self.seconds / 1e12
      text += f'  {tflops:8.3f} TFLOP/s  MFU {100 * tflops / peak_tflops:5.1f}%'
    return text


def median_seconds(fn: Callable[[], None], reps: int, warmup: int) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def measured_peak_tflops(reps: int = 5) -> float:
  """Matmul throughput of this device: f32 on CPU, bf16 elsewhere."""
  on_cpu = jax.default_backend() == 'cpu'
  n, dtype = (2048, jnp.float32) if on_cpu else (8192, jnp.bfloat16)
  a = jnp.ones((n, n), dtype)
  mm = jax.jit(lambda a: a @ a)
  secs = median_seconds(lambda: mm(a).block_until_ready(), reps, warmup=2)
  return 2 * n ** 3 / secs / 1e12


def compiled_flops(compiled) -> Optional[float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


def bench_infer(model, cfg, name: str, batch: int, reps: int, warmup: int) -> Result:
  x = jnp.ones((batch, cfg.image_size, cfg.image_size, 3), jnp.float32)
  params = jax.jit(lambda x: model.init(jax.random.PRNGKey(0), x, train=False))(x)
  fwd = jax.jit(lambda p, x: model.apply(p, x, train=False))
  compiled = fwd.lower(params, x).compile()
  secs = median_seconds(lambda: compiled(params, x).block_until_ready(), reps, warmup)
  return Result(name, secs, batch, compiled_flops(compiled))


def bench_train(model, cfg, name: str, batch: int, reps: int, warmup: int) -> Result:
  """One SGD-momentum step with clipping (the card's recipe), state donated."""
  import ml_collections
  from vit_jax.train.optim import make_optimizer, schedule
  from vit_jax.train.step import init_state, make_train_step
  opt = ml_collections.ConfigDict(dict(lr=0.01, warmup_steps=0, total_steps=10 ** 6,
                                       optimizer='sgd', momentum=0.9, weight_decay=0.0,
                                       grad_clip_norm=1.0))
  tx = make_optimizer(opt)
  x = jnp.zeros((1, cfg.image_size, cfg.image_size, 3))
  state = jax.jit(lambda: init_state(model, tx, cfg.image_size, 0, model.init(
      jax.random.PRNGKey(0), x, train=False)['params']))()
  step = jax.jit(make_train_step(model, tx, schedule(0.01, 0, 10 ** 6), cfg.mean, cfg.std),
                 donate_argnums=(0,))
  images = jnp.zeros((batch, cfg.image_size, cfg.image_size, 3), jnp.uint8)
  labels = jnp.zeros((batch,), jnp.int32)
  compiled = step.lower(state, images, labels).compile()
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], images, labels)
    metrics['loss'].block_until_ready()
  secs = median_seconds(run, reps, warmup)
  return Result(name, secs, batch, compiled_flops(compiled))


def bench_timm_train(cfg, batch: int, reps: int, warmup: int, flops: Optional[float]
                     ) -> list[Result]:
  """The same step in timm: SGD momentum, clipping, eager (and torch.compile)."""
  import torch
  from vit_jax.timm_reference import timm_model
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = timm_model(cfg).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  x = torch.zeros(batch, 3, cfg.image_size, cfg.image_size, device=device)
  y = torch.zeros(batch, dtype=torch.long, device=device)
  amp = cfg.dtype == 'bfloat16'
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def run(m):
    def step():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device, torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(m(x), y)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
      sync()
    return step
  out = [Result('timm eager train', median_seconds(run(model), reps, warmup), batch, flops)]
  try:
    out.append(Result('timm torch.compile train',
                      median_seconds(run(torch.compile(model)), reps, warmup + 1), batch, flops))
  except Exception as e:  # noqa: BLE001 -- report and go on: compile support varies
    print(f'torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:100]}')
  return out


def bench_timm(cfg, batch: int, reps: int, warmup: int, flops: Optional[float]
               ) -> list[Result]:
  """timm eager and torch.compile, inference, on the same kind of device."""
  import torch
  from vit_jax.timm_reference import timm_model
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = timm_model(cfg).to(device)
  x = torch.ones(batch, 3, cfg.image_size, cfg.image_size, device=device)
  amp = cfg.dtype == 'bfloat16'
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def run(m):
    def step():
      with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=amp):
        m(x)
      sync()
    return step
  tag = 'AMP bf16' if amp else 'float32'
  out = [Result(f'timm eager {tag}', median_seconds(run(model), reps, warmup), batch, flops)]
  try:
    compiled = torch.compile(model)
    out.append(Result(f'timm torch.compile {tag}',
                      median_seconds(run(compiled), reps, warmup + 1), batch, flops))
  except Exception as e:  # noqa: BLE001 -- report and go on: compile support varies
    print(f'torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:100]}')
  return out


def device_line() -> tuple[str, Optional[float]]:
  d = jax.devices()[0]
  kind = getattr(d, 'device_kind', d.platform)
  sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in kind), None)
  return f'{jax.device_count()} x {kind} ({jax.default_backend()})', sheet


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog='python -m vit_jax.bench', description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='vit_base_patch16_224')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  p.add_argument('--mode', default='infer', choices=['infer', 'train'])
  p.add_argument('--reps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--compare', choices=['timm', 'official'], action='append', default=[],
                 help='also time timm, or the official Flax model, in this run (repeatable)')
  p.add_argument('--official-checkout', metavar='PATH',
                 help='a checkout of google-research/vision_transformer (for --compare official)')
  args = p.parse_args(argv)
  if args.mode == 'train':
    xla_flags.set_training_flags()  # what train.py runs with
  try:
    cfg = registry.get_model_config(args.model, dtype=args.dtype)
    official = None
    if 'official' in args.compare:
      from vit_jax.official_reference import official_model
      official = official_model(cfg, args.official_checkout or '')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  device, sheet = device_line()
  peak = measured_peak_tflops()
  print(f'device: {device}; measured matmul peak {peak * 1e3:.1f} GFLOP/s'
        + (f'; datasheet bf16 peak {sheet:.0f} TFLOP/s' if sheet else ''))
  print(f'model {args.model}, mode {args.mode}, batch {args.batch}, dtype {args.dtype}, '
        f'median of {args.reps}')
  bench = bench_infer if args.mode == 'infer' else bench_train
  tag = args.dtype if args.mode == 'infer' else f'train {args.dtype}'
  run = lambda model, name: bench(model, cfg, name, args.batch, args.reps, args.warmup)  # noqa: E731
  ours = run(registry.module_from_config(cfg), f'vit_jax {tag}')
  if ours.flops:
    print(f'model FLOPs per image (XLA cost analysis): {ours.flops / args.batch / 1e9:.2f} G')
  results = [ours]
  if official is not None:  # rated on our FLOP count, as timm: MFU ratios are speed ratios
    results.append(dataclasses.replace(run(official, f'official vit_jax {tag}'),
                                       flops=ours.flops))
  if 'timm' in args.compare:
    compare = bench_timm if args.mode == 'infer' else bench_timm_train
    results += compare(cfg, args.batch, args.reps, args.warmup, ours.flops)
  for r in results:
    print(r.line(peak))
  for r in results[1:]:
    print(f'speed-up of vit_jax over {r.name}: {r.seconds / ours.seconds:.2f}x')
  return 0


if __name__ == '__main__':
  sys.exit(main())
