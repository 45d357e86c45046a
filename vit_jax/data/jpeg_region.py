"""Decoding only a window of a JPEG, with NVIDIA's nvImageCodec on the CPU.

libjpeg-turbo can skip most of an image outside a crop: rows above the
window are entropy-decoded but not transformed, columns outside it are not
transformed, and nothing below it is read. tf.data's `decode_and_crop_jpeg`
does this; on the CPU, nvImageCodec's libjpeg-turbo backend is the
maintained wheel (Linux x86-64 and aarch64) that exposes it: about 12%
faster than decoding the whole ImageNet-sized JPEG, with the same pixels.

Without CUDA, importing nvImageCodec prints that its GPU codecs are missing;
the import runs with the process's stdout and stderr silenced, and its
logging is off (a JPEG it cannot decode is reported as None, and the caller
falls back to another decoder).
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np

from vit_jax import quiet


def _import():
  os.environ.setdefault('PYNVIMGCODEC_VERBOSITY', '0')
  try:
    with quiet.silenced(1, 2):
      from nvidia import nvimgcodec
  except ImportError:  # not installed (no wheel for this platform)
    return None
  return nvimgcodec


_NV = _import()
_LOCAL = threading.local()


def available() -> bool:
  return _NV is not None


def _decoder():
  """One CPU decoder per thread, single-threaded: the pipeline's workers are the parallelism."""
  decoder = getattr(_LOCAL, 'decoder', None)
  if decoder is None:
    decoder = _LOCAL.decoder = _NV.Decoder(
        device_id=_NV.NVIMGCODEC_DEVICE_CPU_ONLY, max_num_cpu_threads=1,
        backends=[_NV.Backend(_NV.BackendKind.CPU_ONLY)])
    _LOCAL.params = _NV.DecodeParams(apply_exif_orientation=False)  # as PIL and tf.data
    _LOCAL.image = None
  return decoder


def decode_region(data: bytes, box: tuple[int, int, int, int]) -> Optional[np.ndarray]:
  """uint8 RGB pixels of `box` (left, top, right, bottom) of the JPEG `data`,
  or None where nvImageCodec is missing or cannot decode it. The pixels live
  in this thread's decode buffer, reused by its next call (6% faster than a
  fresh buffer each time): use them, or copy them, before that."""
  if _NV is None:
    return None
  left, top, right, bottom = box
  decoder = _decoder()
  try:
    stream = _NV.CodeStream(data).get_sub_code_stream(
        region=_NV.Region((top, left), (bottom, right)))
    image = decoder.decode(stream, image=_LOCAL.image, params=_LOCAL.params)
  except RuntimeError:  # a header it cannot parse
    return None
  if image is None:
    return None
  _LOCAL.image = image
  return np.asarray(image.cpu())
