"""`.safetensors` files read as memory-mapped numpy arrays, bfloat16 included.

The format is an 8-byte header length, a JSON header (name -> dtype, shape,
byte range; plus `__metadata__`) and the raw little-endian data. Reading it
here rather than through `safetensors.numpy` keeps a full-size checkpoint out
of memory until it is converted and reads bfloat16, which numpy lacks.
"""
from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np

from vit_jax.checkpoints.errors import CheckpointError

_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
           'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
           'BOOL': np.bool_}


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(name -> read-only array, the header's `__metadata__`)."""
  try:
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
      n = int.from_bytes(f.read(8), 'little')
      if not 0 < n <= size - 8:
        raise ValueError(f'header length {n} does not fit the file')
      header = json.loads(f.read(n))
    meta = header.pop('__metadata__', None) or {}
    data = np.memmap(path, np.uint8, 'r', offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    arrays = {}
    for name, info in header.items():
      begin, end = info['data_offsets']
      dtype = np.dtype(_DTYPES[info['dtype']])
      count = int(np.prod(info['shape'], dtype=np.int64))
      if not 0 <= begin <= end <= data.size or end - begin != count * dtype.itemsize:
        raise ValueError(f'tensor {name} reaches outside the file')
      arrays[name] = data[begin:end].view(dtype).reshape(info['shape'])
  except (ValueError, KeyError, TypeError, OSError) as e:  # JSONDecodeError is a ValueError
    raise CheckpointError(f'{path}: truncated or not a safetensors file '
                          f'({type(e).__name__}: {e})') from None
  return arrays, meta
