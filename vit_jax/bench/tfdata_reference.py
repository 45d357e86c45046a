"""big_vision's tf.data training input, rebuilt, for throughput comparisons.

Not a dependency: needs tensorflow, which lives in a separate environment
(its numpy and protobuf pins must not constrain ours), so the benchmark runs
this module there in a subprocess:

  python -m vit_jax.bench.tfdata_reference --images DIR [--cores N]
      [--randaug N,M --big-vision PATH]

It prints one JSON line. The pipeline is big_vision's
`decode_jpeg_and_inception_crop(size) | flip_lr` with the tf.data settings of
its `input_pipeline.make_for_train`; with `--randaug N,M`, then its
`randaug(N, M)`: big_vision's own code, imported from a checkout of
google-research/big_vision (`--big-vision`), with `tfa_image` standing in
for the retired tensorflow_addons. tensorflow is imported only inside
functions, so the module imports without it.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
import time
from typing import Iterator, Optional, Sequence

from etils import epath

# big_vision's defaults (pp/ops_image.py): the Inception crop covers 5% to
# 100% of the image at an aspect ratio (width / height) of 0.75 to 1.33.
AREA_RANGE = (0.05, 1.0)
ASPECT_RATIO_RANGE = (0.75, 1.33)
# big_vision's tf.data settings (input_pipeline.py): a fixed map parallelism
# (not AUTOTUNE), a private pool of 48 threads with one thread per op, no
# injected prefetch, and 2 batches prefetched.
NUM_PARALLEL_CALLS = 100
PRIVATE_THREADPOOL_SIZE = 48
PREFETCH_BATCHES = 2
WARMUP_BATCHES = 3


def available() -> bool:
  """Whether tensorflow is installed here (found without paying for its import)."""
  return importlib.util.find_spec('tensorflow') is not None


def _inception_crop_flip(jpeg, image_size: int):
  """One training image: a random window decoded alone, resized, maybe flipped."""
  import tensorflow as tf
  begin, window_size, _ = tf.image.sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(jpeg), bounding_boxes=tf.zeros([0, 0, 4], tf.float32),
      min_object_covered=0, aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=AREA_RANGE,
      use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], window_size[0], window_size[1]])
  crop = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
  # bilinear without antialiasing gives float32; big_vision clips and casts back
  resized = tf.image.resize(crop, (image_size, image_size), method='bilinear', antialias=False)
  image = tf.cast(tf.clip_by_value(resized, 0, 255), tf.uint8)
  return tf.image.random_flip_left_right(image)


def training_batches(jpegs: Sequence[bytes], image_size: int, batch_size: int,
                     randaug: Optional[tuple[int, float]] = None, autoaugment=None):
  """An endless tf.data.Dataset of uint8 (batch_size, image_size, image_size, 3)
  batches of augmented `jpegs`, built as big_vision builds its training input;
  `randaug` (N, M) applies `autoaugment` (big_vision's module, `tfa_image.
  load_autoaugment`) after the flip, as its `randaug(N, M)` op does."""
  import tensorflow as tf

  def augment(jpeg):
    image = _inception_crop_flip(jpeg, image_size)
    if randaug:
      image = autoaugment.distort_image_with_randaugment(image, *randaug)
    return image
  options = tf.data.Options()
  options.threading.private_threadpool_size = PRIVATE_THREADPOOL_SIZE
  options.threading.max_intra_op_parallelism = 1
  options.experimental_optimization.inject_prefetch = False
  data = tf.data.Dataset.from_tensor_slices(list(jpegs)).with_options(options).repeat()
  data = data.map(augment, num_parallel_calls=NUM_PARALLEL_CALLS)
  return data.batch(batch_size, drop_remainder=True).prefetch(PREFETCH_BATCHES)


def delivered_per_sec(batches: Iterator, batch_size: int, seconds: float) -> float:
  """Images per second an iterator of batches delivers, counted over at least
  `seconds` after a warm-up of a few batches (which fills the workers and the
  prefetch buffers); the benchmark counts both pipelines with it."""
  for _ in range(WARMUP_BATCHES):
    next(batches)
  count, start = 0, time.perf_counter()
  while (elapsed := time.perf_counter() - start) < seconds:
    next(batches)
    count += 1
  return count * batch_size / elapsed


def images_per_sec(jpegs: Sequence[bytes], image_size: int, batch_size: int,
                   seconds: float, randaug: Optional[tuple[int, float]] = None,
                   autoaugment=None) -> float:
  """Augmented images per second delivered as numpy uint8 batches (what
  big_vision's ops produce)."""
  batches = training_batches(jpegs, image_size, batch_size, randaug,
                             autoaugment).as_numpy_iterator()
  return delivered_per_sec(batches, batch_size, seconds)


def _read_jpegs(folder: epath.Path) -> list[bytes]:
  paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in ('.jpg', '.jpeg'))
  return [p.read_bytes() for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m vit_jax.bench.tfdata_reference',
      description="Images/s of big_vision's tf.data training input "
                  '(decode_jpeg_and_inception_crop | flip_lr) on a folder of JPEGs.')
  parser.add_argument('--images', required=True, help='a folder of .jpg/.jpeg files')
  parser.add_argument('--image-size', type=int, default=224)
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--seconds', type=float, default=10.0, help='how long to count')
  parser.add_argument('--cores', type=int, default=None,
                      help='run on the first N cores this process may use (default: all)')
  parser.add_argument('--randaug', metavar='N,M', help="then big_vision's randaug(N, M)")
  parser.add_argument('--big-vision', metavar='PATH',
                      help='a checkout of google-research/big_vision (for --randaug)')
  args = parser.parse_args(argv)
  randaug = None
  if args.randaug:
    try:
      layers, magnitude = ast.literal_eval(args.randaug)
      randaug = (int(layers), float(magnitude))
    except (ValueError, SyntaxError, TypeError):
      print(f'--randaug {args.randaug}: expected N,M such as 2,10', file=sys.stderr)
      return 2
    if not args.big_vision:
      print("--randaug runs big_vision's own code: give a checkout of "
            'google-research/big_vision with --big-vision PATH', file=sys.stderr)
      return 2
  allowed = sorted(os.sched_getaffinity(0))
  cores = len(allowed) if args.cores is None else args.cores
  if not 1 <= cores <= len(allowed):
    print(f'--cores {args.cores}: this process may use 1 to {len(allowed)} cores',
          file=sys.stderr)
    return 2
  # before tensorflow starts: it sizes its thread pools from the cores it sees
  os.sched_setaffinity(0, allowed[:cores])
  folder = epath.Path(args.images)
  if not folder.is_dir() or not (jpegs := _read_jpegs(folder)):
    print(f'--images {args.images}: no .jpg or .jpeg files there', file=sys.stderr)
    return 2
  if not available():
    print(f'tensorflow is not installed for {sys.executable}: run this module with '
          'the python of an environment that has it', file=sys.stderr)
    return 2
  import tensorflow as tf
  autoaugment = None
  if randaug:
    from vit_jax.bench import tfa_image
    try:
      autoaugment = tfa_image.load_autoaugment(args.big_vision)
    except ValueError as e:
      print(f'--big-vision: {e}', file=sys.stderr)
      return 2
  try:
    rate = images_per_sec(jpegs, args.image_size, args.batch_size, args.seconds, randaug,
                          autoaugment)
  except tf.errors.InvalidArgumentError as e:
    print(f'--images {args.images}: a file there is not a JPEG tensorflow can read '
          f'({e.message.splitlines()[0]})', file=sys.stderr)
    return 2
  print(json.dumps({'images_per_sec': round(rate, 1), 'threads': PRIVATE_THREADPOOL_SIZE,
                    'cores': cores}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
