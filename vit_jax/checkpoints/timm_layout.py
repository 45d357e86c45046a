"""timm's state-dict layout <-> our parameter tree (flat, '/'-joined paths).

One rule table per model config serves both directions, so a round trip is
exact by construction and a key that only one direction knows cannot exist.
PyTorch stores Linear weights as (out, in) and convs as (O, I, kh, kw); Flax
stores (in, out) and (kh, kw, I, O); timm fuses q, k, v into one `qkv`. The
rule helpers and `to_ours` / `to_timm` serve any PyTorch layout's table
(hf_layout's too).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import ml_collections
import numpy as np

from vit_jax.checkpoints.errors import CheckpointError

Arrays = list[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Rule:
  """PyTorch state-dict keys <-> our paths, with the array transform for each
  direction."""
  torch: tuple[str, ...]
  ours: tuple[str, ...]
  to_ours: Callable[[Arrays], Arrays]
  to_torch: Callable[[Arrays], Arrays]


def _same(a: Arrays) -> Arrays:
  return list(a)


def _linear_to_ours(a: Arrays) -> Arrays:
  return [a[0].T]


def conv_to_ours(a: Arrays) -> Arrays:
  return [a[0].transpose(2, 3, 1, 0)]


def conv_to_torch(a: Arrays) -> Arrays:
  return [a[0].transpose(3, 2, 0, 1)]


def _patch_to_ours(channels: int, patch: int) -> Callable[[Arrays], Arrays]:
  """Accepts the conv weight (D, C, p, p) and the early 2-D Linear (D, C*p*p)."""
  def f(a: Arrays) -> Arrays:
    return [a[0].reshape(a[0].shape[0], channels, patch, patch).transpose(2, 3, 1, 0)]
  return f


def rule(torch: str, ours: str, to_ours=_same, to_torch=_same) -> Rule:
  return Rule((torch,), (ours,), to_ours, to_torch)


def linear(torch: str, ours: str, bias: bool = True) -> Iterator[Rule]:
  yield rule(f'{torch}.weight', f'{ours}/kernel', _linear_to_ours, _linear_to_ours)
  if bias:
    yield rule(f'{torch}.bias', f'{ours}/bias')


def norm(torch: str, ours: str) -> Iterator[Rule]:
  yield rule(f'{torch}.weight', f'{ours}/scale')
  yield rule(f'{torch}.bias', f'{ours}/bias')


def to_heads(width: int, heads: int) -> Callable[[np.ndarray], np.ndarray]:
  """A (width, width) q/k/v Linear weight to our (width, heads, head_dim) kernel."""
  return lambda w: w.T.reshape(width, heads, width // heads)


def from_heads(width: int) -> Callable[[np.ndarray], np.ndarray]:
  return lambda k: k.reshape(width, width).T


def out_proj(torch: str, ours: str, width: int, heads: int) -> Iterator[Rule]:
  """The attention output Linear <-> our (heads, head_dim, width) `out`."""
  yield rule(f'{torch}.weight', f'{ours}/out/kernel',
             lambda a: [a[0].T.reshape(heads, width // heads, width)],
             lambda a: [a[0].reshape(width, width).T])
  yield rule(f'{torch}.bias', f'{ours}/out/bias')


def _attention(timm: str, ours: str, width: int, heads: int, bias: bool) -> Iterator[Rule]:
  qkv = tuple(f'{ours}/{n}' for n in ('query', 'key', 'value'))
  split, join = to_heads(width, heads), from_heads(width)
  yield Rule((f'{timm}.qkv.weight',), tuple(f'{p}/kernel' for p in qkv),
             lambda a: [split(w) for w in np.split(a[0], 3)],
             lambda a: [np.concatenate([join(k) for k in a])])
  if bias:
    yield Rule((f'{timm}.qkv.bias',), tuple(f'{p}/bias' for p in qkv),
               lambda a: [b.reshape(heads, width // heads) for b in np.split(a[0], 3)],
               lambda a: [np.concatenate([b.reshape(-1) for b in a])])
  yield from out_proj(f'{timm}.proj', ours, width, heads)


def _resnet(stages: tuple[int, ...]) -> Iterator[Rule]:
  bb = 'patch_embed.backbone'
  conv = lambda t, o: rule(f'{t}.weight', f'{o}/kernel', conv_to_ours, conv_to_torch)  # noqa: E731
  yield conv(f'{bb}.stem.conv', 'conv_root')
  yield from norm(f'{bb}.stem.norm', 'gn_root')
  for s, depth in enumerate(stages):
    for b in range(depth):
      t, o = f'{bb}.stages.{s}.blocks.{b}', f'block{s + 1}/unit{b + 1}'
      if b == 0:
        yield conv(f'{t}.downsample.conv', f'{o}/conv_proj')
        yield from norm(f'{t}.downsample.norm', f'{o}/gn_proj')
      for i in (1, 2, 3):
        yield conv(f'{t}.conv{i}', f'{o}/conv{i}')
        yield from norm(f'{t}.norm{i}', f'{o}/gn{i}')


def rules(cfg: ml_collections.ConfigDict) -> list[Rule]:
  """The full rule table for a model config (timm's `no_embed_class` layout
  where the position embeddings have no class slot; `global_pool='token'`
  without a class token for classifier '0')."""
  if cfg.posemb != 'learn' or cfg.classifier == 'map':
    what = (f'posemb {cfg.posemb!r}' if cfg.posemb != 'learn' else "classifier 'map'")
    raise CheckpointError(f"model {cfg.name}: {what} has no place in timm's ViT state-dict "
                          'layout; write .npz (--to big_vision) or orbax')
  out: list[Rule] = []  # in timm's state-dict order
  if cfg.classifier == 'token':
    out.append(rule('cls_token', 'cls'))
  out.append(rule('pos_embed', 'Transformer/posembed_input/pos_embedding'))
  if cfg.resnet is not None:
    out += _resnet(tuple(cfg.resnet))
    in_channels = 64 * 4 * 2 ** (len(cfg.resnet) - 1)
  else:
    in_channels = 3
  out.append(rule('patch_embed.proj.weight', 'embedding/kernel',
                  _patch_to_ours(in_channels, cfg.patch_size), conv_to_torch))
  out.append(rule('patch_embed.proj.bias', 'embedding/bias'))
  for i in range(cfg.num_layers):
    t, o = f'blocks.{i}', f'Transformer/encoderblock_{i}'
    out += norm(f'{t}.norm1', f'{o}/LayerNorm_0')
    out += _attention(f'{t}.attn', f'{o}/MultiHeadDotProductAttention_0', cfg.hidden_size,
                      cfg.num_heads, cfg.qkv_bias)
    out += norm(f'{t}.norm2', f'{o}/LayerNorm_1')
    out += linear(f'{t}.mlp.fc1', f'{o}/MlpBlock_0/Dense_0')
    out += linear(f'{t}.mlp.fc2', f'{o}/MlpBlock_0/Dense_1')
  out += norm('fc_norm' if cfg.classifier == 'gap' else 'norm', 'Transformer/encoder_norm')
  if cfg.representation_size is not None:
    out += linear('pre_logits.fc', 'pre_logits')
  if cfg.num_classes:
    out += linear('head', 'head')
  return out


def to_ours(sd: dict[str, np.ndarray], table: list[Rule]) -> dict[str, np.ndarray]:
  """Our flat tree from a state dict; keys the table lacks are ignored here
  and reported by the caller, which knows both key sets."""
  flat: dict[str, np.ndarray] = {}
  for r in table:
    if all(k in sd for k in r.torch):
      arrays = [np.asarray(sd[k]) for k in r.torch]
      try:
        flat.update(zip(r.ours, r.to_ours(arrays)))
      except ValueError as e:
        raise ValueError(f'{r.torch[0]} of shape {arrays[0].shape}: {e}') from None
  return flat


def to_timm(flat: dict[str, np.ndarray], table: list[Rule]) -> dict[str, np.ndarray]:
  """The table's state dict (for timm's: the modern conv patch embedding)
  from our tree, in the table's order."""
  sd: dict[str, np.ndarray] = {}
  for r in table:
    sd.update(zip(r.torch, (np.ascontiguousarray(a) for a in
                            r.to_torch([np.asarray(flat[p]) for p in r.ours]))))
  return sd


def expected_timm_keys(table: list[Rule]) -> set[str]:
  return {k for r in table for k in r.torch}
