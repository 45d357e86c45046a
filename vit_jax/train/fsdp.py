"""FSDP's gradients: each parameter gathered where it is used, its gradient
reduce-scattered back to the devices that hold it.

Left to itself, XLA's partitioner splits the products of an FSDP-sharded
model between the devices (all-to-alls of activations) or all-reduces whole
gradients before slicing them. Here the gradient computation runs per
device (`shard_map`): the forward pass all-gathers each sharded parameter
over the `fsdp` axis, whose transpose in the backward pass is a
reduce-scatter of its gradient, and the rest is summed over the mesh.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
from jax.sharding import Mesh, PartitionSpec as P

from vit_jax.parallel import BATCH_AXES


def _gather(spec: P) -> Callable[[jax.Array], jax.Array]:
  axes = [i for i, name in enumerate(spec) if name == 'fsdp']
  if not axes:
    return lambda x: x
  return lambda x: jax.lax.all_gather(x, 'fsdp', axis=axes[0], tiled=True)


def sharded(loss_and_grads: Callable, mesh: Mesh, specs: Any) -> Callable:
  """`loss_and_grads(params, images, labels, rng, gather)` (a mean over its
  batch rows) run per device on its rows; returns the same function of
  global, sharded arrays, its loss the mean over the mesh and its gradients
  laid out as `specs` (PartitionSpecs of the parameters)."""
  gathers = jax.tree.map(_gather, specs, is_leaf=lambda s: isinstance(s, P))

  def gather(params):
    return jax.tree.map(lambda g, x: g(x), gathers, params)

  def local(params, images, labels, rng):
    rng = jax.random.fold_in(rng, jax.lax.axis_index(BATCH_AXES))  # each device its dropout
    loss, grads = loss_and_grads(params, images, labels, rng, gather)
    n = jax.lax.psum(1, BATCH_AXES)
    # the transposes sum the gradients over the mesh (reduce-scatters where sharded)
    return jax.lax.pmean(loss, BATCH_AXES), jax.tree.map(lambda g: g / n, grads)

  return jax.shard_map(local, mesh=mesh, in_specs=(specs, P(BATCH_AXES), P(BATCH_AXES), P()),
                       out_specs=(P(), specs))
