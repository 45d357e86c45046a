"""A run's length in steps or in epochs of its training split, never both."""
import ml_collections
import pytest

from vit_jax.train import duration


def _config(**keys):
  c = ml_collections.ConfigDict(dict(batch_size=1024, total_steps=0, total_epochs=0.0))
  c.update(keys)
  return c


def test_epochs_become_steps_rounded_as_big_vision_rounds():
  # 90 x 1,268,355 / 1024 = 111,476.66; 3 x 10 / 4 = 7.5 (round half to even, as Python's)
  assert duration.total_steps(_config(total_epochs=90.0), 1_268_355) == 111_477
  assert duration.total_steps(_config(batch_size=4, total_epochs=3.0), 10) == 8
  assert duration.total_steps(_config(batch_size=4, total_epochs=1.0), 10) == 2
  assert duration.total_steps(_config(total_epochs=0.001), 10) == 1  # at least one step
  assert duration.total_steps(_config(total_steps=500), 10) == 500


def test_the_resolved_copy_keeps_both_and_leaves_the_config_alone():
  c = _config(total_epochs=2.0, batch_size=8)
  c.lock()
  out = duration.resolved(c, 100)
  assert (out.total_steps, out.total_epochs) == (25, 2.0) and c.total_steps == 0
  assert duration.total_steps(out, 100) == 25  # resolving again changes nothing
  assert duration.describe(out, 100) == ('length: 25 steps of 8 = 2.00 epochs of 100 examples '
                                         '(from total_epochs)')
  steps = _config(total_steps=7)
  assert duration.resolved(steps, 100) is steps


@pytest.mark.parametrize('keys, message', [
    (dict(total_steps=100, total_epochs=90.0), 'total_steps=100 and total_epochs=90 are both '
     'set: set one and the other to 0 (--config.total_epochs=0 to count steps)'),
    (dict(), 'total_steps must be a number of steps >= 1 (or set total_epochs); got 0'),
    (dict(total_epochs=None, total_steps=None), 'total_steps must be a number of steps >= 1'),
    (dict(total_epochs=-1.0), 'total_epochs must be a number of epochs >= 0')])
def test_a_length_that_is_not_one_is_named(keys, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
    duration.total_steps(_config(**keys), 1000)
