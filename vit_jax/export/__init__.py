"""Export for serving: a model that runs without this package.

Two routes from any checkpoint `load_params` reads (`python -m convert SRC
DST --to jax-export|onnx`):
- jax-export (`DST.jaxexport`): serialized StableHLO through `jax.export`,
  symbolic batch, for the CPU, CUDA and TPU; plain JAX runs it;
- onnx (`DST.onnx`): an ONNX graph (opset 17) written from the parameters;
  ONNX Runtime, TensorRT or OpenVINO run it.
Both take float32 NHWC images, preprocessed as the model config says, at any
batch size and return the logits; `DST.json` beside them holds the eval
preprocessing and the class names (`serving`).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Optional

from vit_jax import storage

FORMATS = ('jax-export', 'onnx')
SUFFIXES = {'jax-export': '.jaxexport', 'onnx': '.onnx'}
DTYPES = ('float32', 'bfloat16', 'float16')


def format_of(dst: str, to: Optional[str] = None) -> Optional[str]:
  """The export format DST's suffix or `to` names; None for a checkpoint format."""
  suffix = os.path.splitext(dst.rstrip('/'))[1].lower()
  named = next((fmt for fmt, s in SUFFIXES.items() if s == suffix), None)
  if to in FORMATS:
    if named != to:
      raise ValueError(f'{dst}: --to {to} writes a {SUFFIXES[to]} file; name DST '
                       f'...{SUFFIXES[to]}')
    return to
  if named and to is not None:
    raise ValueError(f'{dst}: its suffix names the {named} export, not {to}; drop --to')
  return named


def _note(msg: str) -> None:
  print(f'note: {msg}', file=sys.stderr)


def _compute_dtype(fmt: str, dtype: Optional[str], log: Callable[[str], Any]) -> str:
  dtype = dtype or 'float32'
  if dtype not in DTYPES:
    raise ValueError(f'--dtype {dtype!r}: use one of {", ".join(DTYPES)}')
  if fmt == 'onnx' and dtype != 'float32':
    log(f'the ONNX export computes in float32, not {dtype}: bfloat16 and float16 graphs do not '
        "load in ONNX Runtime's CPU provider; --to jax-export exports a bfloat16 model")
    return 'float32'
  return dtype


def export_checkpoint(src: str, dst: str, fmt: str, model: Optional[str],
                      overrides: dict[str, Any], *, dtype: Optional[str] = None,
                      class_names_file: Optional[str] = None, overwrite: bool = False,
                      log: Callable[[str], Any] = _note) -> str:
  """Read SRC, write the exported model DST and `DST.json`; returns a
  one-line summary. Nothing is left behind on failure."""
  from vit_jax.checkpoints import load_params
  from vit_jax.export import serving
  overrides = dict(overrides)
  dtype = _compute_dtype(fmt, dtype or overrides.pop('dtype', None), log)
  for path in (dst, serving.info_path(dst)):
    _check_absent(path, overwrite)
  # per-block parameters (not scanned), no rematerialisation: the model as it infers
  overrides.update(dtype=dtype, scan_layers=False, remat=False)
  config, params = load_params(src, model, log=log, **overrides)
  names = serving.class_names(src, config, class_names_file)
  info = serving.info(config, fmt, dtype, names, os.path.basename(src.rstrip('/')))
  try:
    if fmt == 'jax-export':
      from vit_jax.export import jax_export
      files = {'': jax_export.serialize(config, params)}
    else:
      from vit_jax.export import onnx_export
      files = onnx_export.serialize(onnx_export.build(config, params, info),
                                    os.path.basename(dst) + '.data')
  except ImportError as e:  # flatbuffers (jax.export's serializer) or onnx
    raise ValueError(f'writing {fmt} needs {e.name}: pip install "vit-jax[export]"') from None
  files[serving.INFO_SUFFIX] = json.dumps(info, indent=1).encode()
  _write_all(dst, files, overwrite)
  size = sum(len(b) for b in files.values())
  beside = ', '.join(dst + s for s in files if s)
  return (f'wrote {dst} ({fmt}, model {config.name}, {dtype}, {size / 1e6:.1f} MB) and {beside}')


def _check_absent(path: str, overwrite: bool) -> None:
  target = storage.resolve(path)
  if not overwrite and (target.exists() or os.path.islink(target)):
    raise ValueError(f'{path} exists; remove it or pass --overwrite')


def _write_all(dst: str, files: dict[str, bytes], overwrite: bool) -> None:
  """DST + suffix for each file, the model (suffix '') last; on failure the
  files this call wrote are removed again."""
  order = sorted(files, key=lambda s: s == '')
  for suffix in order:
    _check_absent(dst + suffix, overwrite)
  storage.resolve(dst).parent.mkdir(parents=True, exist_ok=True)
  written = []
  try:
    for suffix in order:
      storage.write_file(dst + suffix, lambda f, b=files[suffix]: f.write(b))
      written.append(dst + suffix)
  except BaseException:
    for path in written:
      storage.resolve(path).unlink(missing_ok=True)
    raise
