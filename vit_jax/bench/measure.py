"""Benchmark: images/s, step time, TFLOP/s and model FLOP utilisation.

    python -m vit_jax.bench --model vit_base_patch16_224 --batch 8 --dtype float32 \
        --mode infer [--compare timm] [--compare official --official-checkout PATH] \
        [--compare kernels]
    python -m vit_jax.bench --mode pipeline [--photos DIR]
    python -m vit_jax.bench --mode train-input [--compare tfdata] [--image-size 224]
        [--randaug 2,10 [--big-vision PATH]]

Times the jitted step on the devices at hand (warm-up excluded, median of
several repetitions; the implementations take turns each round): ours with
the implementation `vit_jax.backends` picks for each layer (printed, with
why) and the model as written. Model FLOPs come from XLA's cost analysis of our
compiled step (what the output needs: the last block of a class-token model
computes the class token only; with XLA's attention, whose FLOPs the fused
CPU kernel's custom calls hide) and rate every implementation, so their MFU
ratios are speed ratios; utilisation is against the peak measured in the
same process (a large matmul in float32 on CPU, bfloat16 on accelerators)
and, for known GPUs, the datasheet's dense bf16 peak. `--compare timm` runs
the same model in timm (PyTorch eager, and torch.compile where it works) in
the same run; `--compare official` the official Flax model from a checkout
of google-research/vision_transformer, jitted the same way; `--compare
kernels`, on one CPU device, ours with each CPU kernel's choice reversed in
turn (what each is worth on this machine). `--mode pipeline`
times the eval preprocessing of photos on one core, ours and timm's;
`--mode train-input` the training input on one core and on all cores, ours
and, with `--compare tfdata`, big_vision's tf.data ops (`train_input`).
"""
from __future__ import annotations

import argparse
import dataclasses
import pathlib
import statistics
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import backends
from vit_jax.models import registry
from vit_jax.utilization import bf16_peak_tflops


@dataclasses.dataclass
class Runner:
  """One implementation's step, ready to time (compiled and warm)."""
  name: str
  step: Callable[[], None]  # runs one step and waits for it
  batch: int
  flops: Optional[float] = None  # per step


@dataclasses.dataclass
class Result:
  name: str
  seconds: float          # median step time
  batch: int
  flops: Optional[float]  # per step

  def line(self, peak_tflops: float) -> str:
    ips = self.batch / self.seconds
    text = f'{self.name:50s} {self.seconds * 1e3:9.1f} ms  {ips:9.1f} img/s'
    if self.flops:
      tflops = self.flops / self.seconds / 1e12
      text += f'  {tflops:8.3f} TFLOP/s  MFU {100 * tflops / peak_tflops:5.1f}%'
    return text


def time_interleaved(runners: Sequence[Runner], reps: int, warmup: int,
                     pause: float = 0.5) -> list[Result]:
  """Median step times, the runners taking turns each round: a slow spell of a
  shared machine then hits all of them alike, not whichever ran during it.
  The pause before each step lets the previous runner's idle worker threads
  (PyTorch's OpenMP pool spins after each op) stop competing for the cores."""
  for r in runners:
    for _ in range(warmup):
      r.step()
  times: dict[str, list[float]] = {r.name: [] for r in runners}
  for _ in range(reps):
    for r in runners:
      time.sleep(pause)
      t = time.perf_counter()
      r.step()
      times[r.name].append(time.perf_counter() - t)
  return [Result(r.name, statistics.median(times[r.name]), r.batch, r.flops) for r in runners]


def measured_peak_tflops(reps: int = 10) -> float:
  """Matmul throughput of this device (f32 on CPU, bf16 elsewhere): a peak,
  so the fastest of `reps` runs, not their median."""
  on_cpu = jax.default_backend() == 'cpu'
  n, dtype = (2048, jnp.float32) if on_cpu else (8192, jnp.bfloat16)
  a = jnp.ones((n, n), dtype)
  mm = jax.jit(lambda a: a @ a)
  mm(a).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    mm(a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / min(times) / 1e12


def compiled_flops(compiled) -> Optional[float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost['flops']) if cost and 'flops' in cost else None


def _apply(model, kernels: bool):
  """model.apply on this process's first device, with the platform's kernels
  (`vit_jax.backends`) or as written (the official model; FLOP counts, which
  XLA's cost analysis cannot see inside the kernels' custom calls)."""
  devices = jax.devices()[:1]

  def apply(params, x, **kw):
    with backends.for_devices(devices, kernels=kernels):
      return model.apply(params, x, **kw)
  return apply


def random_variables(model, cfg) -> dict:
  """Weights drawn on the host: the timings do not depend on their values,
  and XLA:CPU needs about a second per block to compile a jitted init."""
  x = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x)
  rs = np.random.RandomState(0)
  return jax.tree.map(
      lambda s: jnp.asarray((0.02 * rs.standard_normal(s.shape)).astype(s.dtype)), shapes)


def infer_runner(model, cfg, name: str, batch: int, kernels: bool = True) -> Runner:
  x = jnp.ones((batch, cfg.image_size, cfg.image_size, 3), jnp.float32)
  params = random_variables(model, cfg)
  apply = _apply(model, kernels)
  compiled = jax.jit(lambda p, x: apply(p, x, train=False)).lower(params, x).compile()
  return Runner(name, lambda: compiled(params, x).block_until_ready(), batch,
                compiled_flops(compiled))


def train_runner(model, cfg, name: str, batch: int, kernels: bool = True) -> Runner:
  """One SGD-momentum step with clipping (the card's recipe), state donated."""
  import ml_collections
  from vit_jax.train.optim import make_optimizer, schedule
  from vit_jax.train.step import init_state, make_train_step
  opt = ml_collections.ConfigDict(dict(lr=0.01, warmup_steps=0, total_steps=10 ** 6,
                                       optimizer='sgd', momentum=0.9, weight_decay=0.0,
                                       grad_clip_norm=1.0))
  tx = make_optimizer(opt)
  state = jax.jit(lambda p: init_state(model, tx, cfg.image_size, 0, p))(
      random_variables(model, cfg)['params'])
  step = jax.jit(make_train_step(model, tx, schedule(0.01, 0, 10 ** 6), cfg.mean, cfg.std,
                                 devices=jax.devices()[:1], kernels=kernels),
                 donate_argnums=(0,))
  images = jnp.zeros((batch, cfg.image_size, cfg.image_size, 3), jnp.uint8)
  labels = jnp.zeros((batch,), jnp.int32)
  compiled = step.lower(state, images, labels).compile()
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], images, labels)
    metrics['loss'].block_until_ready()
  return Runner(name, run, batch, compiled_flops(compiled))


def kernel_runners(make: Callable[..., Runner], model, cfg, tag: str, batch: int,
                   flops: Optional[float]) -> list[Runner]:
  """Ours with one CPU kernel's choice reversed, for each in turn: what
  each replacement is worth on this machine. None off one CPU device."""
  devices = jax.devices()[:1]
  if backends.platform_of(devices) != 'cpu' or cfg.dtype != 'float32':
    print('--compare kernels: the CPU kernels run on one CPU device in float32 only')
    return []
  from vit_jax.backends.cpu import choice
  chosen = {k for k, c in choice.choices().items() if c.kernel}
  runners = []
  for layer, name in choice.LAYERS.items():
    with choice.override(chosen ^ {layer}):
      runner = make(model, cfg, f'vit_jax {tag}, {name} {"XLA" if layer in chosen else "kernel"}',
                    batch)
    runners.append(dataclasses.replace(runner, flops=flops))
  return runners


def timm_runners(cfg, batch: int, train: bool, flops: Optional[float]) -> list[Runner]:
  """The same model in timm, eager and (where it works) torch.compile: the
  forward, or the same step (SGD momentum, clipping), on the same device kind."""
  import torch
  from vit_jax.bench.timm_reference import timm_model
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = timm_model(cfg).to(device).train(train)
  amp = cfg.dtype == 'bfloat16'
  x = torch.ones(batch, 3, cfg.image_size, cfg.image_size, device=device)
  y = torch.zeros(batch, dtype=torch.long, device=device)
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def step_of(m):
    def infer():
      with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=amp):
        m(x)
      sync()

    def train_step():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device, torch.bfloat16, enabled=amp):
        loss = torch.nn.functional.cross_entropy(m(x), y)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
      sync()
    return train_step if train else infer
  tag = 'train' if train else ('AMP bf16' if amp else 'float32')
  out = [Runner(f'timm eager {tag}', step_of(model), batch, flops)]
  try:
    compiled = step_of(torch.compile(model))
    compiled()  # compiles now: a failure is reported here, not mid-measurement
    out.append(Runner(f'timm torch.compile {tag}', compiled, batch, flops))
  except Exception as e:  # noqa: BLE001 -- report and go on: compile support varies
    print(f'torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:100]}')
  return out


def photo_files(folder: Optional[str]) -> list[str]:
  """JPEG/PNG files of `folder` (default: scikit-image's sample photos) whose
  shorter side is at least 96 pixels."""
  import glob
  import os
  from PIL import Image
  if folder is None:
    try:
      import skimage.data
    except ImportError:
      raise ValueError('--mode pipeline needs --photos DIR or scikit-image installed') from None
    folder = os.path.dirname(skimage.data.__file__)
  files = sorted(f for ext in ('jpg', 'jpeg', 'png') for f in glob.glob(f'{folder}/*.{ext}'))
  def big_enough(f):
    with Image.open(f) as img:
      return min(img.size) >= 96
  files = [f for f in files if big_enough(f)]
  if not files:
    raise ValueError(f'{folder}: no JPEG or PNG photos with a side of 96 pixels or more')
  return files


def pipeline_runners(cfg, files: Sequence[str]) -> list[Runner]:
  """Eval preprocessing of encoded photos on one core: ours (decode, resize,
  crop; normalisation runs on the device) and, when installed, timm's eval
  transform (the same, then ToTensor and Normalize on the host)."""
  from vit_jax.data.preprocess import decode_rgb, eval_crop
  blobs = [pathlib.Path(f).read_bytes() for f in files]

  def ours():
    for b in blobs:
      eval_crop(decode_rgb(b), cfg.image_size, cfg.crop_pct, cfg.interpolation)
  runners = [Runner('vit_jax eval preprocessing', ours, len(blobs))]
  try:
    import torch
    from timm.data import create_transform
  except ImportError:
    return runners
  import io
  from PIL import Image
  torch.set_num_threads(1)
  transform = create_transform(input_size=(3, cfg.image_size, cfg.image_size),
                               crop_pct=cfg.crop_pct, interpolation=cfg.interpolation,
                               mean=cfg.mean, std=cfg.std)

  def timm():
    for b in blobs:
      transform(Image.open(io.BytesIO(b)).convert('RGB'))
  return runners + [Runner('timm eval transform', timm, len(blobs))]


def device_line() -> tuple[str, Optional[float]]:
  d = jax.devices()[0]
  kind = getattr(d, 'device_kind', d.platform)
  sheet = bf16_peak_tflops(kind)
  return f'{jax.device_count()} x {kind} ({jax.default_backend()})', sheet


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog='python -m vit_jax.bench', description=__doc__.split('\n\n')[0])
  p.add_argument('--model', default='vit_base_patch16_224')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  p.add_argument('--mode', default='infer',
                 choices=['infer', 'train', 'pipeline', 'train-input'],
                 help='the forward pass, a training step, the eval preprocessing of photos on '
                 'one core (timm too when installed), or the training input on one core and '
                 'all cores')
  p.add_argument('--photos', metavar='DIR', help='photos for --mode pipeline (default: '
                 "scikit-image's sample photos)")
  p.add_argument('--reps', type=int, default=10)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--compare', choices=['timm', 'official', 'kernels', 'tfdata'],
                 action='append', default=[],
                 help='also time timm, the official Flax model, ours with each CPU kernel '
                 "switched the other way, or (with --mode train-input) big_vision's tf.data "
                 'input, in this run (repeatable)')
  p.add_argument('--image-size', type=int, default=224, help='crops of --mode train-input')
  p.add_argument('--rounds', type=int, default=3, help='rounds of --mode train-input, each '
                 'measuring every configuration in turn')
  p.add_argument('--official-checkout', metavar='PATH',
                 help='a checkout of google-research/vision_transformer (for --compare official)')
  p.add_argument('--randaug', metavar='N,M', help='--mode train-input: with RandAugment(N, M), '
                 "ours and (--compare tfdata) big_vision's")
  p.add_argument('--big-vision', metavar='PATH', help='a checkout of google-research/big_vision '
                 '(for --compare tfdata --randaug)')
  args = p.parse_args(argv)
  if args.mode == 'train-input':
    from vit_jax.bench import train_input
    try:
      randaug = train_input.parse_randaug_flag(args.randaug) if args.randaug else None
    except argparse.ArgumentTypeError as e:
      print(f'error: --randaug: {e}', file=sys.stderr)
      return 2
    return train_input.run('tfdata' in args.compare, image_size=args.image_size,
                           rounds=args.rounds, randaug=randaug, big_vision=args.big_vision)
  # the process settings of train.py (training) and eval.py, for every implementation
  backends.configure_process(training=args.mode == 'train')
  try:
    cfg = registry.get_model_config(args.model, dtype=args.dtype)
    official = None
    if 'official' in args.compare:
      from vit_jax.bench.official_reference import official_model
      official = official_model(cfg, args.official_checkout or '')
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.mode == 'pipeline':
    try:
      runners = pipeline_runners(cfg, photo_files(args.photos))
    except ValueError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    print(f'{runners[0].batch} photos, {cfg.image_size} px crops (crop_pct {cfg.crop_pct}, '
          f'{cfg.interpolation}), one core, median of {args.reps} passes')
    return report(time_interleaved(runners, args.reps, args.warmup), peak=1.0)
  device, sheet = device_line()
  print(f'device: {device}' + (f'; datasheet bf16 peak {sheet:.0f} TFLOP/s' if sheet else ''))
  try:
    layers = backends.describe(jax.devices()[:1], args.dtype)
  except ValueError as e:  # VIT_JAX_CPU_KERNELS set to something else than 0 or 1
    print(f'error: {e}', file=sys.stderr)
    return 2
  print('layers: ' + '\n        '.join(layers))
  print(f'model {args.model}, mode {args.mode}, batch {args.batch}, dtype {args.dtype}, '
        f'median of {args.reps}')
  train = args.mode == 'train'
  make = train_runner if train else infer_runner
  tag = f'train {args.dtype}' if train else args.dtype
  model = registry.module_from_config(cfg)
  ours = make(model, cfg, f'vit_jax {tag}', args.batch)
  written = make(model, cfg, f'vit_jax {tag}, model as written', args.batch, kernels=False)
  # XLA's cost analysis cannot see into the kernels' custom calls
  ours.flops = written.flops
  if ours.flops:
    print(f'model FLOPs per image (XLA cost analysis): {ours.flops / args.batch / 1e9:.2f} G')
  runners = [ours, written]
  if 'kernels' in args.compare:
    runners += kernel_runners(make, model, cfg, tag, args.batch, ours.flops)
  if official is not None:  # rated on our FLOP count, as timm: MFU ratios are speed ratios
    runners.append(dataclasses.replace(
        make(official, cfg, f'official vit_jax {tag}', args.batch, kernels=False),
        flops=ours.flops))
  if 'timm' in args.compare:
    runners += timm_runners(cfg, args.batch, train, ours.flops)
  before = measured_peak_tflops()
  results = time_interleaved(runners, args.reps, args.warmup)
  after = measured_peak_tflops()  # before and after: a slow spell lowers it
  peak = max(before, after)
  # the two apart: the machine's speed moved during the run, and the MFU with it
  print(f'measured matmul peak {peak * 1e3:.1f} GFLOP/s (before the runs {before * 1e3:.1f}, '
        f'after {after * 1e3:.1f})')
  return report(results, peak)


def report(results: Sequence[Result], peak: float) -> int:
  """Print each result and the speed-up of the first over the others."""
  for r in results:
    print(r.line(peak))
  for r in results[1:]:
    print(f'speed-up of {results[0].name} over {r.name}: {r.seconds / results[0].seconds:.2f}x')
  return 0

