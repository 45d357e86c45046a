"""Convert a Vision Transformer checkpoint between formats.

    python -m convert SRC DST [--to hf] [--model NAME] [--num-classes N] [--set KEY=VALUE ...]

The format of each side comes from its suffix: .pth/.pt/.bin (timm state
dict), .safetensors (timm names), .npz (Google's release layout; big_vision's
reads too), or a directory (vit_jax orbax checkpoint; also a path ending in
.orbax). A Hugging Face transformers ViT directory (config.json) reads as
SRC, and `--to hf` writes one; `--to big_vision` writes an .npz in
big_vision's layout. SRC may also be a training workdir. A DST ending in
.jaxexport (`--to jax-export`) or .onnx (`--to onnx`) is a model exported
for serving (`vit_jax.export`).
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Any, Optional, Sequence

EXAMPLES = """examples:
  python -m convert jx_vit_base_p16_224-80ecf9dd.pth vit_b16_224/
  python -m convert vit_b16_224/ vit_b16_224.safetensors
  python -m convert ViT-B_16.npz vit_b16_in21k/ --model vit_base_patch16_224_in21k
  python -m convert vit_b16_224/ b16_cifar10_384/ --num-classes 10 --set image_size=384
  python -m convert vit-base-patch16-224/ vit_b16_hf.orbax
  python -m convert vit_b16_224/ vit-b16-for-transformers/ --to hf
  python -m convert vit_s16_i1k_90ep.npz vit_s16_i1k_90ep.orbax
  python -m convert vit_s16_i1k_90ep.orbax s16_for_big_vision.npz --to big_vision
  python -m convert jx_vit_base_p16_224-80ecf9dd.pth vit_b16_224.jaxexport --to jax-export
  python -m convert jx_vit_base_p16_224-80ecf9dd.pth vit_b16_224.onnx
"""
DIRECTORY_FORMATS = ('hf', 'orbax')
FILE_LAYOUTS = {'big_vision': 'npz'}  # --to a layout of a file format: the format DST names
EXPORT_FLAGS = {'dtype': '--dtype', 'class_names_file': '--class-names'}


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
  out = {}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise ValueError(f'--set takes KEY=VALUE, got {item!r}')
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m convert' if sys.argv[0].endswith('__main__.py') else None,
      description=__doc__.split('\n\n')[0],
      epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('src', nargs='?', help='checkpoint to read: .pth/.pt/.bin, .safetensors, '
                 '.npz, a Hugging Face directory, an orbax directory or a training workdir')
  p.add_argument('dst', nargs='?', help='file or directory to write; its suffix picks the '
                 'format (a path ending in .orbax or without a suffix is an orbax directory)')
  p.add_argument('--to', metavar='FORMAT', help='the directory format to write: '
                 'hf (transformers ViTForImageClassification, or ViTModel without a head) or '
                 "orbax (the default); big_vision: an .npz in big_vision's layout; or an "
                 'export for serving: jax-export (DST.jaxexport) or onnx (DST.onnx)')
  p.add_argument('--model', help='registered model name; needed when SRC does not say its '
                 'architecture (timm and Google files other than the registered weights files)')
  p.add_argument('--num-classes', type=int, help='new head size: a different value '
                 're-initialises the head to zeros; 0 drops it')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override a model config field, e.g. image_size=384 (resamples the '
                 'position embeddings); repeatable')
  p.add_argument('--overwrite', action='store_true', help='replace DST if it exists')
  p.add_argument('--list-models', action='store_true', help='print the registered model '
                 'names with their weights files and exit')
  p.add_argument('--dtype', help='export: the compute dtype of a jax-export (float32, the '
                 'default, or bfloat16); ONNX computes in float32')
  p.add_argument('--class-names', metavar='FILE', help='export: the class names, one a line '
                 '(default: a Hugging Face id2label, or the ImageNet names for 1000 classes)')
  return p


def _dst_format(dst: str, to: Optional[str]) -> str:
  from vit_jax.checkpoints import detect_format
  named = detect_format(dst)
  if to in FILE_LAYOUTS:
    if named != FILE_LAYOUTS[to]:
      raise ValueError(f'{dst}: --to {to} writes a .{FILE_LAYOUTS[to]} file; name DST so')
    return to
  if to is None or to == named:
    return named
  if named not in DIRECTORY_FORMATS or dst.rstrip('/').lower().endswith('.orbax'):
    raise ValueError(f'{dst}: its suffix names the {named} format, but --to {to} writes a '
                     'directory; pick another DST or drop --to')
  return to


def convert(src: str, dst: str, model: Optional[str], overrides: dict[str, Any],
            overwrite: bool = False, to: Optional[str] = None, **export_options: Any) -> str:
  """Read SRC, write DST (in the format `to` names, else DST's); returns a
  one-line summary. `export_options` (dtype, class_names_file) are for an
  export."""
  from vit_jax import export
  known = DIRECTORY_FORMATS + tuple(FILE_LAYOUTS) + export.FORMATS
  if to is not None and to not in known:
    raise ValueError(f'--to {to!r} is not a format; use one of {", ".join(known)}')
  exported = export.format_of(dst, to)
  if exported:
    return export.export_checkpoint(src, dst, exported, model, overrides, overwrite=overwrite,
                                    **export_options)
  given = [EXPORT_FLAGS[k] for k, v in sorted(export_options.items()) if v is not None]
  if given:
    raise ValueError(f'{", ".join(given)}: for an export only (--to jax-export or onnx)')
  import numpy as np
  import jax
  from vit_jax import storage
  from vit_jax.checkpoints import load_params, save_params
  fmt = _dst_format(dst, to)
  target = storage.resolve(dst)
  if (target.exists() or os.path.islink(target)) and not overwrite:
    raise ValueError(f'{dst} exists; remove it or pass --overwrite')
  note = lambda msg: print(f'note: {msg}', file=sys.stderr)  # noqa: E731
  config, params = load_params(src, model, log=note, **overrides)
  if fmt not in DIRECTORY_FORMATS:
    save_params(dst, params, config, fmt)
  else:
    target.parent.mkdir(parents=True, exist_ok=True)
    with storage.new_directory(dst) as out:
      save_params(out, params, config, fmt)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  summary = f'wrote {dst} ({fmt}, model {config.name}, {count:,} parameters)'
  if fmt == 'big_vision':
    from vit_jax.checkpoints import big_vision_layout
    summary += f'; big_vision model: {big_vision_layout.model_kwargs(config)}'
  return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  import jax
  # on the CPU everywhere: no accelerator is needed, and a TPU that a training
  # job holds stays its own
  jax.config.update('jax_platforms', 'cpu')
  from vit_jax.models import registry
  if args.list_models:
    for name in registry.list_models():
      print(f'{name:32s} {registry.get_model_config(name).weights_file or ""}')
    return 0
  if not args.src or not args.dst:
    build_parser().error('SRC and DST are required')
  try:
    overrides = _parse_set(args.set)
    if args.num_classes is not None:
      overrides['num_classes'] = args.num_classes
    print(convert(args.src, args.dst, args.model, overrides, args.overwrite, args.to,
                  dtype=args.dtype, class_names_file=args.class_names))
  except (ValueError, OSError) as e:  # CheckpointError, unknown model/field, I/O
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


def run() -> None:
  """The `vit-jax-convert` command (and `python -m convert` in a checkout)."""
  sys.exit(main())


if __name__ == '__main__':
  run()
