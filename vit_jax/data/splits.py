"""How many examples a dataset spec holds, where its records may be absent.

A run that counts epochs needs the training split's size, and planning it
for a TPU slice (`--compile_for`) needs no data: the size comes from the
prepared dataset when it is there, else from TFDS's catalogue sizes of the
splits the recipes read, sliced as TFDS slices them (`train[:99%]` is
round(0.99 x 1,281,167) = 1,268,355 examples, `train[99%:]` the other 12,812).
"""
from __future__ import annotations

from typing import Optional

from vit_jax.data.sources import DEFAULT_SPLITS, DatasetError, open_source

# Full splits of the TFDS datasets the recipes name (their catalogue pages).
KNOWN_SPLITS = {
    'imagenet2012': {'train': 1_281_167, 'validation': 50_000},
    'imagenet2012_real': {'validation': 50_000},
    'imagenet_v2': {'test': 10_000},
}


def known_size(spec: str) -> Optional[int]:
  """The size of `tfds:NAME[:SPLIT]` from KNOWN_SPLITS (any TFDS slice of
  those splits), None for another dataset; a split it lacks or a bad slice
  is a DatasetError."""
  kind, _, rest = spec.partition(':')
  name, _, split = rest.partition(':')
  sizes = KNOWN_SPLITS.get(name.split('/')[0]) if kind == 'tfds' else None
  if sizes is None:
    return None
  import tensorflow_datasets as tfds
  split = split or next(s for s in DEFAULT_SPLITS if s in sizes)
  infos = {k: tfds.core.SplitInfo(name=k, shard_lengths=[n], num_bytes=0,
                                  filename_template=None) for k, n in sizes.items()}
  try:
    parts = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
  except (ValueError, AssertionError) as e:
    raise DatasetError(f'TFDS dataset {name}: {str(e).splitlines()[0]} '
                       f'(spec: tfds:{name}:SPLIT)') from None
  return sum((sizes[p.splitname] if p.to is None else p.to) - (p.from_ or 0) for p in parts)


def num_examples(spec: str, data_dir: Optional[str] = None) -> int:
  """The examples of `spec`: the prepared dataset's count, else its known size."""
  try:
    return len(open_source(spec, data_dir))
  except DatasetError:
    size = known_size(spec)
    if size is None:
      raise
    return size
