"""Reading and writing .pth without torch, and refusing pickled code."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from vit_jax.checkpoints import CheckpointError
from vit_jax.checkpoints.torch_format import read_pth, write_pth
from conftest import data_path


@pytest.mark.parametrize('name', ['zip_format.pth', 'legacy_format.pth'])
def test_reads_files_written_by_torch(name):
  """Made by torch 2.13: a transposed view, a storage offset, a scalar,
  float16, bfloat16 and int64, in both the zip and the pre-1.6 format."""
  sd = read_pth(data_path('torch', name))
  expected = np.load(data_path('torch', 'expected.npz'))
  assert list(sd) == list(expected.files)
  for k in expected.files:
    assert sd[k].shape == expected[k].shape, k
    np.testing.assert_array_equal(sd[k].astype(expected[k].dtype), expected[k], err_msg=k)
  assert sd['half'].dtype == np.float16 and sd['steps'].dtype == np.int64
  assert sd['bf16'].dtype == np.float32  # widened exactly


def test_write_then_read_is_bit_exact(tmp_path):
  rs = np.random.RandomState(0)
  sd = {'a.weight': rs.randn(3, 5).astype(np.float32), 'b': rs.randn(7).astype(np.float32),
        'c': np.asfortranarray(rs.randn(4, 2).astype(np.float32)),
        'd': np.zeros((0, 3), np.float32)}
  path = str(tmp_path / 'x.pth')
  write_pth(path, sd)
  back = read_pth(path)
  assert list(back) == list(sd)
  for k in sd:
    np.testing.assert_array_equal(back[k], sd[k])
    assert back[k].dtype == sd[k].dtype
  with zipfile.ZipFile(path) as zf:  # torch's layout, data 64-byte aligned
    names = zf.namelist()
    assert names[0] == 'archive/data.pkl' and 'archive/version' in names
    for info in zf.infolist():
      if info.filename.startswith('archive/data/'):
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra)
        assert offset % 64 == 0


def _malicious_pickle(marker: str) -> bytes:
  class Payload:
    def __reduce__(self):
      return (os.system, (f'touch {marker}',))
  return pickle.dumps({'w': Payload()}, protocol=2)


def test_zip_pth_with_code_is_refused_and_the_code_does_not_run(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', _malicious_pickle(str(marker)))
  with pytest.raises(CheckpointError, match=r"refusing global '(posix|os)\.system'"):
    read_pth(str(path))
  assert not marker.exists()


def test_legacy_header_with_code_is_refused(tmp_path):
  """The legacy format starts with three small pickles; they are unpickled
  with the same allowlist as the state dict."""
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil_header.pth'
  path.write_bytes(_malicious_pickle(str(marker)))
  with pytest.raises(CheckpointError, match='refusing global'):
    read_pth(str(path))
  assert not marker.exists()


def test_legacy_pth_with_code_is_refused(tmp_path):
  marker = tmp_path / 'pwned'
  buf = io.BytesIO()
  for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
    pickle.dump(obj, buf, protocol=2)
  buf.write(_malicious_pickle(str(marker)))
  path = tmp_path / 'evil_legacy.pth'
  path.write_bytes(buf.getvalue())
  with pytest.raises(CheckpointError, match='refusing global'):
    read_pth(str(path))
  assert not marker.exists()


@pytest.mark.parametrize('content', [b'', b'hello, not a checkpoint', b'PK\x03\x04trunc'])
def test_garbage_is_a_clear_error(tmp_path, content):
  path = tmp_path / 'bad.pth'
  path.write_bytes(content)
  with pytest.raises(CheckpointError, match='bad.pth'):
    read_pth(str(path))


def test_truncated_real_checkpoint_is_a_clear_error(tmp_path):
  data = open(data_path('timm', 'vit_base_patch16_224.pth'), 'rb').read()
  path = tmp_path / 'cut.pth'
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(CheckpointError, match='cut.pth'):
    read_pth(str(path))
