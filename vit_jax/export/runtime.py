"""Running an exported model the way a server would, for `predict.py`: the
jax-export file with `jax.export.deserialize`, the ONNX file with ONNX
Runtime, the preprocessing and class names from `MODEL.json` beside it."""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from vit_jax import storage
from vit_jax.export import serving

Run = Callable[[np.ndarray], np.ndarray]


def _jax(path: str) -> tuple[Run, dict]:
  import jax
  try:
    exported = jax.export.deserialize(bytearray(storage.resolve(path).read_bytes()))
  except Exception as e:  # flatbuffers reads foreign bytes into any error (struct, index)
    raise ValueError(f'{path}: not a jax-export file ({type(e).__name__})') from None
  return (lambda x: np.asarray(exported.call(x))), {}


def _onnx(path: str) -> tuple[Run, dict]:
  try:
    import onnxruntime as ort
  except ImportError:
    raise ValueError(f'{path}: running an ONNX model needs onnxruntime '
                     "(pip install 'vit-jax[export]')") from None
  # a path, not bytes: external weights (MODEL.onnx.data) are found beside it
  source = (path if not storage.is_remote(path) and os.path.exists(path)
            else storage.resolve(path).read_bytes())
  try:
    session = ort.InferenceSession(source, providers=['CPUExecutionProvider'])
  except Exception as e:  # onnxruntime raises its own exception types
    raise ValueError(f'{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})') from None
  name = session.get_inputs()[0].name
  inside = session.get_modelmeta().custom_metadata_map.get(serving.METADATA_KEY)
  return (lambda x: session.run(None, {name: x})[0]), json.loads(inside) if inside else {}


def load(path: str, fmt: str) -> tuple[dict, Run]:
  """(the model's JSON object, images -> the model's output); an ONNX
  model's own copy of the object serves where none lies beside it."""
  if not storage.resolve(path).exists():
    raise ValueError(f'{path}: no such file')
  run, inside = (_jax if fmt == 'jax-export' else _onnx)(path)
  if inside and not storage.resolve(serving.info_path(path)).exists():
    return inside, run
  return serving.read_info(path), run
