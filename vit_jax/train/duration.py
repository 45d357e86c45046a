"""A run's length: `total_steps`, or `total_epochs` of the training split.

As big_vision's `u.steps('total', ...)`: with `total_epochs` set (not 0),
the run takes round(total_epochs * N / batch_size) steps, N the number of
examples of `dataset` as opened (a slice such as `train[:99%]` counts its
own), and `total_steps` must be 0 (or that number): one of the two says how
long a run is. Warm-up, evaluation and checkpoint intervals stay in steps.
"""
from __future__ import annotations

import copy

import ml_collections

from vit_jax.train.config_keys import total_epochs_of


def total_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """The steps the config asks for, given the training split's size."""
  epochs = total_epochs_of(config)
  steps = config.get('total_steps')
  if epochs is None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
      raise ValueError(f'total_steps must be a number of steps >= 1 (or set total_epochs); '
                       f'got {steps!r}')
    return steps
  derived = max(1, round(epochs * num_examples / config.batch_size))
  if steps and steps != derived:  # the derived value itself: already resolved
    raise ValueError(f'total_steps={steps} and total_epochs={epochs:g} are both set: set one '
                     'and the other to 0 (--config.total_epochs=0 to count steps)')
  return derived


def resolved(config: ml_collections.ConfigDict,
             num_examples: int) -> ml_collections.ConfigDict:
  """A copy of `config` whose `total_steps` is the run's length; a config
  that counts epochs keeps `total_epochs` beside it, for the record."""
  steps = total_steps(config, num_examples)
  if total_epochs_of(config) is None:
    return config
  out = copy.deepcopy(config)
  with out.unlocked():
    out.total_steps = steps
  return out


def describe(config: ml_collections.ConfigDict, num_examples: int) -> str:
  """One line of what the resolved length means, for the start-up summary."""
  epochs = config.total_steps * config.batch_size / num_examples
  how = ('total_epochs' if total_epochs_of(config) is not None else 'total_steps')
  return (f'length: {config.total_steps:,} steps of {config.batch_size:,} = {epochs:.2f} epochs '
          f'of {num_examples:,} examples (from {how})')
