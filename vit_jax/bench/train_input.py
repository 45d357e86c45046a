"""Training-input throughput: our pipeline against big_vision's tf.data ops.

    python -m vit_jax.bench --mode train-input [--compare tfdata] [--image-size 224]
        [--randaug 2,10 [--big-vision PATH]]

Each figure comes from a fresh process, pinned to one core or given all the
cores this process may use, on ImageNet-like JPEGs (`input_images`) held in
memory: `train_batches` as training runs it (threads, then worker
processes) and, with `--compare tfdata`, big_vision's
`decode_jpeg_and_inception_crop | flip_lr` over tf.data with its own defaults
(`tfdata_reference`; needs tensorflow, so run from an environment that has
it). With `--randaug N,M` both add RandAugment: ours (`randaugment`) and
big_vision's own `randaug(N, M)` from a checkout of google-research/big_vision
(`--big-vision`, run with tfa_image standing in for tensorflow_addons). One
more row reads the same JPEGs from a folder dataset, file by file, as
training does. The configurations take turns each round and the median of the rounds
is printed, so a slow spell of a shared machine hits all of them alike.

The per-image work that holds the GIL is measured as the whole per-image
cost on 16x16 JPEGs, where decoding and resizing take microseconds: an upper
bound, and the one-process ceiling it implies (1 / that time).
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np


def _ours_per_sec(folder: str, image_size: int, batch_size: int, seconds: float,
                  processes: bool, from_files: bool,
                  randaug: Optional[tuple[int, float]] = None) -> float:
  """`train_batches` over the folder dataset, or over its records read into
  memory first (as the tf.data side holds its JPEGs)."""
  from vit_jax.bench.tfdata_reference import delivered_per_sec
  from vit_jax.data.sources import open_source
  from vit_jax.data.train_pipeline import train_batches
  source = open_source(f'folder:{folder}')
  if not from_files:
    source = [source[i] for i in range(len(source))]
  batches = train_batches(source, seed=0, start_step=0, total_steps=1 << 30,
                          batch_size=batch_size, image_size=image_size, processes=processes,
                          randaug=randaug)
  try:
    return delivered_per_sec(batches, batch_size, seconds)
  finally:
    batches.close()


def gil_seconds_per_image(images: int = 256, reps: int = 5,
                          randaug: Optional[tuple[int, float]] = None) -> float:
  """This thread's CPU time per image of `Augmentation.fill` on 16x16 JPEGs
  held in memory (the best of `reps` passes)."""
  from PIL import Image
  from vit_jax.data.train_pipeline import Augmentation
  rng = np.random.default_rng(0)
  records = []
  for i in range(images):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, 'JPEG')
    records.append({'image': buf.getvalue(), 'label': i % 10, 'id': str(i)})
  aug = Augmentation(records, 0, images, images, 0, 16, (0.08, 1.0), True, 'bilinear', randaug)
  out, labels = np.empty((images, 16, 16, 3), np.uint8), np.empty((images,), np.int32)
  best = float('inf')
  for step in range(reps):
    start = time.thread_time()
    aug.fill(step, 0, images, out, labels)
    best = min(best, (time.thread_time() - start) / images)
  return best


def _child(argv: Sequence[str]) -> int:
  """One measurement, in this process: prints a JSON line."""
  p = argparse.ArgumentParser()
  p.add_argument('--images', required=True)
  p.add_argument('--image-size', type=int)
  p.add_argument('--batch-size', type=int)
  p.add_argument('--seconds', type=float)
  p.add_argument('--cores', type=int)
  p.add_argument('--processes', action='store_true')
  p.add_argument('--from-files', action='store_true')
  p.add_argument('--randaug', type=parse_randaug_flag)
  a = p.parse_args(argv)
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:a.cores])
  rate = _ours_per_sec(a.images, a.image_size, a.batch_size, a.seconds, a.processes,
                       a.from_files, a.randaug)
  print(json.dumps({'images_per_sec': rate}))
  return 0


def _measure(command: list[str]) -> float:
  out = subprocess.run(command, capture_output=True, text=True, check=False)
  lines = [line for line in out.stdout.splitlines() if line.startswith('{')]
  if out.returncode or not lines:
    raise RuntimeError(f'{" ".join(command)} failed: {out.stderr.strip().splitlines()[-1:]}')
  return json.loads(lines[-1])['images_per_sec']


def parse_randaug_flag(text: str) -> tuple[int, float]:
  """`--randaug N,M` as (N, M); argparse reports a ValueError as a usage error."""
  from vit_jax.data.randaugment import parse_randaug
  try:
    value = parse_randaug(ast.literal_eval(text), '--randaug')
  except (ValueError, SyntaxError):
    value = None
  if value is None:
    raise argparse.ArgumentTypeError(f'expected N,M such as 2,10 (N >= 1 layers, magnitude '
                                     f'M >= 0), got {text!r}')
  return value


def run(compare_tfdata: bool, image_size: int = 224, batch_size: int = 256,
        seconds: float = 10.0, rounds: int = 3, count: int = 512,
        photos: Optional[str] = None, randaug: Optional[tuple[int, float]] = None,
        big_vision: Optional[str] = None) -> int:
  """Prints img/s per configuration and the ratios; returns an exit code."""
  from vit_jax.bench import input_images, tfdata_reference
  if compare_tfdata and not tfdata_reference.available():
    print(f'error: --compare tfdata needs tensorflow, which {sys.executable} does not have: '
          'run from an environment with tensorflow and vit-jax (BENCHMARKS.md)',
          file=sys.stderr)
    return 2
  if compare_tfdata and randaug and not big_vision:
    print("error: --compare tfdata --randaug runs big_vision's own RandAugment: give a "
          'checkout of google-research/big_vision with --big-vision PATH', file=sys.stderr)
    return 2
  cores = len(os.sched_getaffinity(0))
  gil = gil_seconds_per_image(randaug=randaug)
  with tempfile.TemporaryDirectory(prefix='vit_jax_train_input_') as tmp:
    folder = os.path.join(tmp, 'images')
    jpegs = input_images.imagenet_like_jpegs(count)
    input_images.write_folder(folder, jpegs)
    flat = os.path.join(tmp, 'flat')
    input_images.write_folder(flat, jpegs, classes=1)
    flat = os.path.join(flat, 'class_000')
    common = ['--image-size', str(image_size), '--batch-size', str(batch_size),
              '--seconds', str(seconds)]
    if randaug:
      common += ['--randaug', f'{randaug[0]},{randaug[1]:g}']
    ours = [sys.executable, '-m', 'vit_jax.bench.train_input', '--images', folder, *common]
    tf = [sys.executable, '-m', 'vit_jax.bench.tfdata_reference', '--images', flat, *common]
    if randaug:
      tf += ['--big-vision', big_vision]
    every = ['--cores', str(cores)]
    configs = {'vit_jax, 1 core': ours + ['--cores', '1'],
               f'vit_jax threads, {cores} cores': ours + every,
               f'vit_jax processes, {cores} cores': ours + every + ['--processes'],
               f'vit_jax threads, {cores} cores, files': ours + every + ['--from-files']}
    if compare_tfdata:
      configs.update({'tf.data, 1 core': tf + ['--cores', '1'],
                      f'tf.data, {cores} cores': tf + ['--cores', str(cores)]})
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
      for name, command in configs.items():
        rates[name].append(_measure(command))
  mean_kb = sum(len(j) for j in jpegs) / len(jpegs) / 1e3
  augmentation = f'RandAugment({randaug[0]}, {randaug[1]:g})' if randaug else 'no RandAugment'
  print(f'{count} ImageNet-like JPEGs ({mean_kb:.0f} KB on average), {image_size} px crops, '
        f'{augmentation}, batch {batch_size}, {seconds:g} s per measurement, median of '
        f'{rounds} rounds')
  median = {name: statistics.median(r) for name, r in rates.items()}
  for name, r in rates.items():
    print(f'{name:32s} {median[name]:8.0f} img/s  ({", ".join(f"{x:.0f}" for x in r)})')
  if compare_tfdata:
    print(f'one core: {median["vit_jax, 1 core"] / median["tf.data, 1 core"]:.2f}x tf.data')
    for kind in ('threads', 'processes'):
      name = f'vit_jax {kind}, {cores} cores'
      print(f'{cores} cores, {kind}: {median[name] / median[f"tf.data, {cores} cores"]:.2f}x '
            'tf.data')
  print(f'GIL held per image: at most {gil * 1e6:.1f} us, so one process tops out near '
        f'{1 / gil:,.0f} img/s however many threads it runs')
  return 0


if __name__ == '__main__':
  sys.exit(_child(sys.argv[1:]))
