"""The augmentation and optimizer keys of a training config, read and checked.

Read without JAX, so the command line can reject a malformed value (one
line naming the key and the form it takes, exit 2) before anything starts;
the training program reads the same values through these functions.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Optional

from vit_jax.data import randaugment

WEIGHT_DECAY_STYLES = ('adamw', 'big_vision')
MU_DTYPES = ('float32', 'bfloat16')
_ALPHA = 'a number >= 0, the a of Beta(a, a) (e.g. 0.2), or 0 for none'
_PROBABILITY = 'a probability in [0, 1]'
# the form each key takes, for the messages
FORMS = {
    'randaug': randaugment.FORM,
    'mixup': _ALPHA, 'cutmix': _ALPHA,
    'mix_switch_prob': _PROBABILITY, 'mix_prob': _PROBABILITY,
    'weight_decay_style': "'adamw' (w -= lr(t) * wd * w) or 'big_vision' "
                          "(w -= lr(t) / lr * wd * w)",
    'adam_mu_dtype': "'float32' or 'bfloat16'",
}


def malformed(key: str, value: Any) -> Optional[str]:
  """The message for a value of `key` that does not parse; None for other keys."""
  return f'{key} must be {FORMS[key]}; got {value!r}' if key in FORMS else None


@dataclasses.dataclass(frozen=True)
class Mixing:
  """Mixup and CutMix settings (`vit_jax.train.mixing`)."""
  mixup: float = 0.0        # Beta(a, a) of Mixup; 0: none
  cutmix: float = 0.0       # Beta(a, a) of CutMix; 0: none
  switch_prob: float = 0.5  # with both: the fraction of steps that use CutMix
  prob: float = 1.0         # the fraction of steps that mix at all

  @property
  def active(self) -> bool:
    return self.mixup > 0 or self.cutmix > 0


def randaug_of(config: Any) -> Optional[tuple[int, float]]:
  """(layers, magnitude) of `randaug`, or None."""
  return randaugment.parse_randaug(config.get('randaug', ()), 'randaug')


def mixing_of(config: Any) -> Mixing:
  """The Mixing of `mixup`, `cutmix`, `mix_switch_prob` and `mix_prob`."""
  def number(key, default, ok):
    value = config.get(key, default)
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and ok(value)):
      raise ValueError(malformed(key, value))
    return float(value)
  return Mixing(number('mixup', 0.0, lambda v: v >= 0),
                number('cutmix', 0.0, lambda v: v >= 0),
                number('mix_switch_prob', 0.5, lambda v: 0 <= v <= 1),
                number('mix_prob', 1.0, lambda v: 0 <= v <= 1))


def check_optimizer(config: Any) -> None:
  if config.get('optimizer', 'sgd') not in ('sgd', 'adamw'):
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")
  check_adam_and_decay(config)


def check_adam_and_decay(config: Any) -> None:
  for key, choices in (('weight_decay_style', WEIGHT_DECAY_STYLES),
                       ('adam_mu_dtype', MU_DTYPES)):
    if config.get(key, choices[0]) not in choices:
      raise ValueError(malformed(key, config.get(key)))


def check(config: Any) -> None:
  """A ValueError naming the first malformed key of these (absent keys take
  their defaults): randaug, the mixing keys, weight_decay_style, adam_mu_dtype."""
  randaug_of(config)
  mixing_of(config)
  check_adam_and_decay(config)
