"""What a compiled executable's HLO text says: its collectives, its custom
calls, and the operand types of its dots and convolutions."""
from __future__ import annotations

import collections
import re

import numpy as np

COLLECTIVES = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all', 'collective-permute')
_ARRAY = re.compile(r'\b(pred|[suf]\d+|bf16|f8\w*|c64|c128)\[([\d,]*)\]')
# `%name = TYPE opcode(operands)`: TYPE is an array or a tuple of them
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([a-z][\w\-]*)\((.*)$',
                          re.M)
_BYTES = {'pred': 1, 'bf16': 2, 'c64': 8, 'c128': 16}


def _dtype_bytes(dtype: str) -> int:
  if dtype in _BYTES:
    return _BYTES[dtype]
  if dtype.startswith('f8'):
    return 1
  return max(1, int(re.sub(r'\D', '', dtype) or 8) // 8)


def type_bytes(hlo_type: str) -> int:
  """Bytes of an HLO array or tuple type, layouts ignored."""
  total = 0
  for dtype, dims in _ARRAY.findall(hlo_type):
    shape = [int(d) for d in dims.split(',') if d]
    total += _dtype_bytes(dtype) * int(np.prod(shape, dtype=np.int64))
  return total


def _instructions(text: str):
  for m in _INSTRUCTION.finditer(text):
    yield m.group(1), m.group(2), m.group(3), m.group(4)


def collectives(text: str) -> dict[str, dict[str, int]]:
  """{kind: {'count', 'bytes'}} of the collectives (an asynchronous pair
  counts once, with its result's bytes)."""
  out: dict[str, dict[str, int]] = {}
  for _, hlo_type, opcode, _ in _instructions(text):
    kind = opcode[:-len('-done')] if opcode.endswith('-done') else opcode
    if kind in COLLECTIVES:
      entry = out.setdefault(kind, {'count': 0, 'bytes': 0})
      entry['count'] += 1
      entry['bytes'] += type_bytes(hlo_type)
  return dict(sorted(out.items()))


def custom_call_targets(text: str) -> list[str]:
  return sorted(set(re.findall(r'custom_call_target="([^"]+)"', text)))


def dot_operand_types(text: str) -> collections.Counter:
  """Counter of ((lhs dtype, rhs dtype), op name) over the dots and
  convolutions (fused ones included), op names with block numbers dropped."""
  types: dict[str, str] = {}
  products = []
  for name, hlo_type, opcode, rest in _instructions(text):
    types[name] = hlo_type
    if opcode in ('dot', 'convolution'):
      operands = re.findall(r'%([\w.\-]+)', rest.split(')')[0])[:2]
      op_name = re.search(r'op_name="([^"]+)"', rest)
      products.append((operands, op_name.group(1) if op_name else opcode))
  found: collections.Counter = collections.Counter()
  for operands, op_name in products:
    dtypes = tuple(_ARRAY.search(types.get(o, '')).group(1) if _ARRAY.search(types.get(o, ''))
                   else '?' for o in operands)
    found[(dtypes, re.sub(r'encoderblock_\d+', 'encoderblock_N', op_name))] += 1
  return found
