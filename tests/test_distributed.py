"""Joining a multi-host run: the heartbeat timeout reaches JAX; what counts
as a lost peer."""
import jax
import pytest

from vit_jax import distributed


@pytest.fixture
def joined(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *a, **kw: calls.append((a, kw)))
  return calls


def test_the_heartbeat_timeout_reaches_jax(joined):
  distributed.initialize('auto', None, None, heartbeat_timeout_s=7)
  distributed.initialize('127.0.0.1:1234', 2, 1, heartbeat_timeout_s=9)
  assert joined[0] == ((), {'heartbeat_timeout_seconds': 7})
  assert joined[1] == (('127.0.0.1:1234',), {'num_processes': 2, 'process_id': 1,
                                             'heartbeat_timeout_seconds': 9})
  distributed.initialize(None, None, None)
  assert len(joined) == 2


def test_a_lost_peer_is_found_in_the_error_or_what_it_arose_from():
  gone = RuntimeError('UNKNOWN: Gloo AllGather failed: [pair.cc:547] Connection closed by peer '
                      '[127.0.0.1]:4242')
  try:
    try:
      raise gone
    finally:
      raise ValueError('could not finish the checkpoint')  # raised while handling it
  except ValueError as e:
    assert distributed._peer_gone(e) == str(gone)
  assert distributed._peer_gone(ValueError('RESOURCE_EXHAUSTED: out of memory')) is None


def test_other_errors_and_single_process_runs_pass_through():
  with pytest.raises(RuntimeError, match='Connection closed by peer'):
    with distributed.exit_when_a_worker_is_lost('it resumes'):  # not a multi-process run
      raise RuntimeError('Connection closed by peer')
