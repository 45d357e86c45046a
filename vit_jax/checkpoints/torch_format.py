"""PyTorch `.pth` state dicts read and written without torch.

Reading uses an unpickler whose `find_class` knows only the handful of names
a plain state dict needs (like `torch.load(weights_only=True)`); any other
global in the file is refused before it can be called, so no code from the
file runs. Both the zip format (torch >= 1.6) and the legacy format of the
2020 releases are read. Writing emits the zip format with a hand-written
pickle of the same few names, which torch's safe loader accepts.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Union

import numpy as np

from vit_jax import storage
from vit_jax.checkpoints.errors import CheckpointError

_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': 'bfloat16', 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
  def __init__(self, name: str):
    self.name = name


class _Storage:
  """A flat storage: a buffer (bytes, or a memory map of the file) plus dtype."""

  def __init__(self, raw: Any, dtype: Any):
    self.raw, self.dtype = raw, dtype

  def array(self) -> np.ndarray:
    if self.dtype == 'bfloat16':
      u16 = np.frombuffer(self.raw, np.uint16)
      return (u16.astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(self.raw, self.dtype)


class _TensorRef:
  """A tensor as (storage, offset, size, stride); materialised only after the
  whole file is read, since the legacy format stores the bytes last."""

  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def array(self) -> np.ndarray:
    flat = self.storage.array()
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if any(n == 0 for n in self.size):
      return np.zeros(self.size, flat.dtype)
    if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
      raise ValueError('tensor reaches outside its storage')
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size,
        strides=tuple(s * flat.dtype.itemsize for s in self.stride), writeable=False)
    # a contiguous tensor stays a view of the (memory-mapped) file: no copy
    return view if view.flags.c_contiguous else np.array(view, order='C')


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_):
  return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_):
  return data


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('builtins', 'set'): set,
}


class _SafeUnpickler(pickle.Unpickler):
  def __init__(self, file: BinaryIO, load_storage):
    super().__init__(file, encoding='utf-8')
    self._load_storage = load_storage

  def find_class(self, module: str, name: str):
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(
        f"refusing global '{module}.{name}': a state dict needs none, so the file may try "
        'to run code')

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r}')
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f'unsupported storage type {storage_type!r}')
    return self._load_storage(key, _STORAGE_DTYPES[storage_type.name])


def _member_data(zf: zipfile.ZipFile, data: np.ndarray, name: str) -> Any:
  """An uncompressed member as a zero-copy slice of the file's bytes (torch
  stores them so); a compressed one is read into memory."""
  info = zf.getinfo(name)
  if info.compress_type != zipfile.ZIP_STORED:
    return zf.read(name)
  name_len, extra_len = struct.unpack(
      '<HH', data[info.header_offset + 26:info.header_offset + 30].tobytes())
  start = info.header_offset + 30 + name_len + extra_len
  if start + info.file_size > len(data):
    raise ValueError(f'member {name} runs past the end of the file')
  return data[start:start + info.file_size]


def _read_zip(path: str, data: np.ndarray) -> Any:
  with storage.resolve(path).open('rb') as f, zipfile.ZipFile(f) as zf:
    pkl = [n for n in zf.namelist() if n.endswith('data.pkl')]
    if not pkl:
      raise CheckpointError(f'{path}: a zip file but not a PyTorch checkpoint (no data.pkl)')
    prefix = pkl[0][:-len('data.pkl')]
    load = lambda key, dtype: _Storage(  # noqa: E731
        _member_data(zf, data, f'{prefix}data/{key}'), dtype)
    return _SafeUnpickler(io.BytesIO(zf.read(pkl[0])), load).load()


def _read_legacy(path: str) -> Any:
  """torch < 1.6: magic, protocol, sys info, the object, storage keys, storages."""
  pending: dict[str, _Storage] = {}

  def load(key: str, dtype: Any) -> _Storage:
    return pending.setdefault(key, _Storage(b'', dtype))

  with storage.resolve(path).open('rb') as f:
    if _SafeUnpickler(f, load).load() != _LEGACY_MAGIC:
      raise CheckpointError(f'{path}: not a PyTorch checkpoint (bad magic number)')
    _SafeUnpickler(f, load).load()  # protocol version
    _SafeUnpickler(f, load).load()  # sys info: a plain dict

    obj = _SafeUnpickler(f, load).load()
    for key in _SafeUnpickler(f, load).load():
      st = pending[str(key)]
      numel, = struct.unpack('<q', f.read(8))
      st.raw = f.read(numel * np.dtype(np.uint16 if st.dtype == 'bfloat16' else st.dtype).itemsize)
  return obj


def read_pth(path: str) -> dict[str, np.ndarray]:
  """A `.pth`/`.pt`/`.bin` state dict as name -> numpy array (no code run).

  Arrays of the zip format are read-only views of a memory map of a local
  file, so a full-size checkpoint is converted without a second copy in memory.
  """
  data = storage.file_bytes(path)
  zipped = data[:2].tobytes() == b'PK'
  with storage.resolve(path).open('rb') as f:
    if zipped and not zipfile.is_zipfile(f):
      raise CheckpointError(f'{path}: truncated zip archive; download or copy the file again')
  try:
    obj = _read_zip(path, data) if zipped else _read_legacy(path)
    for wrapper in ('state_dict', 'model', 'model_ema', 'state_dict_ema'):
      if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
        break
    if not isinstance(obj, dict) or not all(isinstance(v, _TensorRef) for v in obj.values()):
      raise CheckpointError(f'{path}: holds no state dict of tensors')
    return {k: v.array() for k, v in obj.items()}
  except CheckpointError:
    raise
  except pickle.UnpicklingError as e:
    if 'refusing' in str(e):
      raise CheckpointError(f'{path}: {e}') from None
    raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint '
                          f'({" ".join(str(e).split())})') from None
  except (EOFError, struct.error, zipfile.BadZipFile, ValueError, KeyError, IndexError,
          TypeError, AttributeError) as e:
    raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint ({type(e).__name__})'
                          ) from None


# --- writing -------------------------------------------------------------

_STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
                  np.dtype(np.float16): 'HalfStorage', np.dtype(np.int64): 'LongStorage',
                  np.dtype(np.int32): 'IntStorage'}


def _global(module: str, name: str) -> bytes:
  return pickle.GLOBAL + f'{module}\n{name}\n'.encode()


def _int(i: int) -> bytes:
  return pickle.BININT + struct.pack('<i', i)


def _str(s: str) -> bytes:
  b = s.encode()
  return pickle.BINUNICODE + struct.pack('<I', len(b)) + b


def _tuple(items: list[bytes]) -> bytes:
  return pickle.MARK + b''.join(items) + pickle.TUPLE


def _state_dict_pickle(arrays: list[tuple[str, np.ndarray]]) -> bytes:
  ordered_dict = _global('collections', 'OrderedDict') + pickle.EMPTY_TUPLE + pickle.REDUCE
  out = [pickle.PROTO + b'\x02', ordered_dict, pickle.MARK]
  for key, (name, a) in enumerate(arrays):
    storage = _tuple([_str('storage'), _global('torch', _STORAGE_NAMES[a.dtype]),
                      _str(str(key)), _str('cpu'), _int(a.size)]) + pickle.BINPERSID
    strides = [s // a.itemsize for s in a.strides] if a.size else [1] * a.ndim
    args = _tuple([storage, _int(0), _tuple([_int(d) for d in a.shape]),
                   _tuple([_int(s) for s in strides]), pickle.NEWFALSE, ordered_dict])
    out += [_str(name), _global('torch._utils', '_rebuild_tensor_v2'), args, pickle.REDUCE]
  out += [pickle.SETITEMS, pickle.STOP]
  return b''.join(out)


def _write_aligned(zf: zipfile.ZipFile, name: str, data: bytes, align: int = 64) -> None:
  """A stored entry whose data starts on an `align`-byte boundary, as torch
  writes them (so `torch.load(mmap=True)` works too)."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  start = zf.fp.tell() + 30 + len(name.encode())
  pad = (-(start + 4)) % align
  info.extra = struct.pack('<HH', 0x4246, pad) + b'Z' * pad
  zf.writestr(info, data)


def write_pth(file: Union[str, BinaryIO], state_dict: dict[str, np.ndarray],
              archive: str = 'archive') -> None:
  """Write a state dict in torch's zip format (float32 tensors, C order) to
  a path or an open binary file."""
  arrays = [(k, np.ascontiguousarray(v)) for k, v in state_dict.items()]
  for k, a in arrays:
    if a.dtype not in _STORAGE_NAMES:
      raise CheckpointError(f'cannot write {k}: dtype {a.dtype} has no torch storage here')
  with zipfile.ZipFile(file, 'w', zipfile.ZIP_STORED) as zf:
    _write_aligned(zf, f'{archive}/data.pkl', _state_dict_pickle(arrays))
    _write_aligned(zf, f'{archive}/byteorder', b'little')
    for key, (_, a) in enumerate(arrays):
      _write_aligned(zf, f'{archive}/data/{key}', a.tobytes())
    _write_aligned(zf, f'{archive}/version', b'3\n')
