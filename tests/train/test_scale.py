"""Same losses at any scale: 1 process x 4 devices, 2 processes x 2 devices
(jax.distributed over gloo), accum_steps=2 on 2 devices, and parameters
sharded over 2 of 4 devices (fsdp=2)."""
import socket

import pytest

from eval_helpers import photo_folder
from train_helpers import metric_rows, run, start, tiny_args


def _port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


# width 128: the kernels pass the FSDP size threshold and really shard
WIDE = ("{'patch_size': 8, 'hidden_size': 128, 'num_layers': 1, 'num_heads': 4, "
        "'mlp_dim': 256, 'num_classes': 3}")


def test_losses_agree_across_devices_hosts_accumulation_and_fsdp(tmp_path):
  data = photo_folder(str(tmp_path / 'data'), counts=(6, 6, 5))
  common = dict(total_steps=4, checkpoint_every=100, lr=0.1, model_overrides=WIDE)
  run(tiny_args(tmp_path / 'one_host', data, **common), devices=4)
  run(tiny_args(tmp_path / 'fsdp', data, fsdp=2, **common), devices=4)
  run(tiny_args(tmp_path / 'accum', data, accum_steps=2, **common), devices=2)
  port = _port()
  procs = [start(tiny_args(tmp_path / 'two_hosts', data, **common,
                           coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                           process_id=i), devices=2) for i in range(2)]
  for p in procs:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  ref = metric_rows(tmp_path / 'one_host')
  assert len(ref) == 4 and ref[-1]['loss'] != ref[0]['loss']
  for name in ('two_hosts', 'accum', 'fsdp'):
    rows = metric_rows(tmp_path / name)
    assert [r['step'] for r in rows] == [r['step'] for r in ref]
    for a, b in zip(rows, ref):
      assert a['loss'] == pytest.approx(b['loss'], rel=1e-5), name
      assert a['grad_norm'] == pytest.approx(b['grad_norm'], rel=1e-4), name
      assert a['lr'] == b['lr']
