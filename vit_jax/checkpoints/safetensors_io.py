"""`.safetensors` files read as memory-mapped numpy arrays, bfloat16 included.

The format is an 8-byte header length, a JSON header (name -> dtype, shape,
byte range; plus `__metadata__`) and the raw little-endian data. Reading it
here rather than through `safetensors.numpy` keeps a full-size checkpoint out
of memory until it is converted and reads bfloat16, which numpy lacks.
"""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np

from vit_jax import storage
from vit_jax.checkpoints.errors import CheckpointError

_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
           'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
           'BOOL': np.bool_}


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(name -> read-only array, the header's `__metadata__`)."""
  try:
    raw = storage.file_bytes(path)
    n = int.from_bytes(raw[:8].tobytes(), 'little')
    if not 0 < n <= raw.size - 8:
      raise ValueError(f'header length {n} does not fit the file')
    header = json.loads(raw[8:8 + n].tobytes())
    meta = header.pop('__metadata__', None) or {}
    data = raw[8 + n:]
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
