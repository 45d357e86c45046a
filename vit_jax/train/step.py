"""The jitted training step: forward, loss, gradients (accumulated), update.

State is a plain dict: `step`, `params`, `opt_state`, `rng`, `bad_step`
(the first step whose loss or gradients were not finite, else -1). A
non-finite step leaves parameters and optimizer state untouched, so nothing
bad can reach a checkpoint; the host stops the run when it sees bad_step.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vit_jax import backends
from vit_jax.train.fsdp import sharded
from vit_jax.train.losses import loss_fn as named_loss
from vit_jax.train.mixing import MIX_STREAM


def init_state(model: nn.Module, tx: optax.GradientTransformation, image_size: int,
               seed: int, params: Any = None) -> dict:
  """Fresh state; `params` (e.g. pretrained) replace the random init."""
  rng = jax.random.PRNGKey(seed)
  init_rng, train_rng = jax.random.split(rng)
  if params is None:
    params = model.init(init_rng, jnp.zeros((1, image_size, image_size, 3)))['params']
  return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': tx.init(params),
          'rng': train_rng, 'bad_step': jnp.full((), -1, jnp.int32)}


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    lr_fn: Callable, mean: Sequence[float], std: Sequence[float],
                    label_smoothing: float = 0.0, accum_steps: int = 1,
                    devices: Optional[Sequence[jax.Device]] = None,
                    kernels: bool = True, fsdp: Optional[tuple] = None,
                    mix: Optional[Callable] = None, loss: str = 'softmax_xent') -> Callable:
  """(state, images uint8 NHWC, labels) -> (state, metrics); not yet jitted.
  `devices` (default: all) are those the step will run on: their platform
  picks the layers' implementations (`vit_jax.backends`); `kernels=False`
  keeps the model as written (the benchmark's reference models). `fsdp`:
  (mesh, the parameters' PartitionSpecs) of sharded parameters, whose
  gradients `vit_jax.train.fsdp` computes. `mix`: (rng, images, labels) ->
  (images, soft targets), Mixup or CutMix (`vit_jax.train.mixing`), drawing
  from the step's rng. `loss`: one of `vit_jax.train.losses.LOSSES`."""
  criterion = named_loss(loss)
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  devices = list(jax.devices() if devices is None else devices)

  def loss_fn(params, images, labels, rng, gather):
    x = (images.astype(jnp.float32) / 255.0 - mean) / std
    with backends.for_devices(devices, kernels):
      logits = model.apply({'params': gather(params)}, x, train=True, rngs={'dropout': rng})
    return criterion(logits, labels, label_smoothing)

  grad_fn = jax.value_and_grad(loss_fn)
  optimizer = optax.with_extra_args_support(tx)

  def loss_and_grads(params, images, labels, rng, gather=lambda p: p):
    if accum_steps == 1:
      return grad_fn(params, images, labels, rng, gather)
    # micro-batch k takes rows k, k + accum, ...: every device keeps its own rows
    split = lambda a: jnp.moveaxis(  # noqa: E731
        a.reshape((a.shape[0] // accum_steps, accum_steps) + a.shape[1:]), 1, 0)

    def micro(carry, xs):
      out = grad_fn(params, xs[0], xs[1], jax.random.fold_in(rng, xs[2]), gather)
      return jax.tree.map(jnp.add, carry, out), None
    zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), _ = jax.lax.scan(
        micro, zeros, (split(images), split(labels), jnp.arange(accum_steps)))
    return jax.tree.map(lambda g: g / accum_steps, (loss, grads))

  if fsdp is not None:
    loss_and_grads = sharded(loss_and_grads, *fsdp)

  def step(state, images, labels):
    rng = jax.random.fold_in(state['rng'], state['step'])
    if mix is not None:
      images, labels = mix(jax.random.fold_in(rng, MIX_STREAM), images, labels)
    loss, grads = loss_and_grads(state['params'], images, labels, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    def update(params, opt_state):  # the clipping takes the norm computed above
      updates, opt_state = optimizer.update(grads, opt_state, params, grad_norm=grad_norm)
      return optax.apply_updates(params, updates), opt_state
    # cond, not a where over both trees: the update stays in place (3x cheaper)
    params, opt_state = jax.lax.cond(finite, update, lambda *s: s, state['params'],
                                     state['opt_state'])
    new_state = {
        'step': state['step'] + 1,
        'params': params,
        'opt_state': opt_state,
        'rng': state['rng'],
        'bad_step': jnp.where((state['bad_step'] < 0) & ~finite, state['step'],
                              state['bad_step']),
    }
    metrics = {'loss': loss, 'grad_norm': grad_norm, 'lr': lr_fn(state['step'])}
    return new_state, metrics
  return step
