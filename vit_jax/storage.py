"""Where the commands' files live: a local path (relative to the current
directory, `~` expanded) or cloud storage (`gs://BUCKET/...`), both as
`etils.epath` paths (gcsfs reaches the bucket; orbax's arrays go through
tensorstore's own GCS driver).

Cloud storage has no appends and no renames of directories, but an object
appears only once its upload is complete; the writers here lean on that
where a local disk needs a temporary file and a rename.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from typing import BinaryIO, Callable, Iterator, Union

import numpy as np
from etils import epath

PathLike = Union[str, os.PathLike]


def is_remote(path: PathLike) -> bool:
  """A URL with a scheme (gs://, s3://): not a file of this machine."""
  return '://' in os.fspath(path)


def resolve(path: PathLike) -> epath.Path:
  """The absolute path (orbax refuses relative ones), symbolic links kept. A
  URL stays as it is: epath's own `resolve()` turns gs://b/x into ./gs:/b/x."""
  text = os.fspath(path)
  if is_remote(text):
    return epath.Path(text.rstrip('/'))
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def file_bytes(path: PathLike) -> np.ndarray:
  """A file's bytes as a read-only uint8 array: memory-mapped where local (a
  full-size checkpoint stays on disk until it is used), downloaded whole
  where remote."""
  if is_remote(path):
    return np.frombuffer(epath.Path(path).read_bytes(), np.uint8)
  local = os.path.expanduser(os.fspath(path))
  if os.path.getsize(local) == 0:
    return np.zeros(0, np.uint8)
  return np.memmap(local, np.uint8, 'r')


def write_file(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
  """`write(file)` into a new file that replaces `path` complete or not at
  all: locally a temporary file beside it, renamed when done; on cloud
  storage a buffer uploaded as one object."""
  if is_remote(path):
    buffer = io.BytesIO()
    write(buffer)
    epath.Path(path).write_bytes(buffer.getvalue())
    return
  target = resolve(path)
  fd, tmp = tempfile.mkstemp(dir=target.parent, prefix='.tmp-', suffix=target.suffix)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def new_directory(path: PathLike) -> Iterator[epath.Path]:
  """Where to write a directory that replaces `path` complete or not at all:
  locally a temporary directory beside it, renamed over it when the block
  ends; on cloud storage (no directory renames) `path` itself, emptied
  first and removed again if the block fails."""
  target = resolve(path)
  if is_remote(path):
    if target.exists():
      target.rmtree()
    try:
      yield target
    except BaseException:
      if target.exists():
        target.rmtree()
      raise
    return
  tmp = epath.Path(tempfile.mkdtemp(dir=target.parent, prefix='.tmp-'))
  try:
    yield tmp / 'out'
    if os.path.lexists(target):
      target.rmtree() if target.is_dir() else target.unlink()
    os.replace(tmp / 'out', target)
  finally:
    tmp.rmtree(missing_ok=True)
