"""The augmentation, optimizer, loss, duration and evaluation keys of a
training config, read and checked.

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
from vit_jax.train.losses import LOSSES

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
    'loss': "'softmax_xent' (softmax cross-entropy) or 'sigmoid_xent' (big_vision's: a "
            "sigmoid per class)",
    'total_epochs': 'a number of epochs >= 0 (total_steps = round(epochs x the training '
                    "split's size / batch_size)); 0 counts total_steps instead",
    'evals': "a dict {NAME: DATASET} of the datasets evaluated besides eval_dataset, e.g. "
             "{'v2': 'tfds:imagenet_v2:test'}, or {} for none",
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


def loss_of(config: Any) -> str:
  """The training loss's name (`loss`, default 'softmax_xent')."""
  value = config.get('loss', LOSSES[0])
  if value not in LOSSES:
    raise ValueError(malformed('loss', value))
  return value


def total_epochs_of(config: Any) -> Optional[float]:
  """`total_epochs`, or None when the run counts `total_steps` (0 or None)."""
  value = config.get('total_epochs', 0)
  if not value and value is not False:  # 0 and None: unset
    return None
  if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and value > 0):
    raise ValueError(malformed('total_epochs', value))
  return float(value)


def evals_of(config: Any) -> dict[str, str]:
  """{name: dataset spec} of `evals`; names are the metrics' prefixes
  (`NAME/top1`), so each is a plain word."""
  value = config.get('evals', None) or {}
  value = value.to_dict() if hasattr(value, 'to_dict') else value
  if not (isinstance(value, dict) and all(
      isinstance(k, str) and k.replace('_', '').replace('-', '').isalnum()
      and isinstance(v, str) and v for k, v in value.items())):
    raise ValueError(malformed('evals', value))
  return dict(value)


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
  their defaults): randaug, the mixing keys, weight_decay_style, adam_mu_dtype,
  loss, total_epochs, evals."""
  randaug_of(config)
  mixing_of(config)
  check_adam_and_decay(config)
  loss_of(config)
  total_epochs_of(config)
  evals_of(config)
