"""timm's state-dict layout <-> our parameter tree (flat, '/'-joined paths).

One rule table per model config serves both directions, so a round trip is
exact by construction and a key that only one direction knows cannot exist.
PyTorch stores Linear weights as (out, in) and convs as (O, I, kh, kw); Flax
stores (in, out) and (kh, kw, I, O); timm fuses q, k, v into one `qkv`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import ml_collections
import numpy as np

Arrays = list[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Rule:
  """timm keys <-> our paths, with the array transform for each direction."""
  timm: tuple[str, ...]
  ours: tuple[str, ...]
  to_ours: Callable[[Arrays], Arrays]
  to_timm: Callable[[Arrays], Arrays]


def _same(a: Arrays) -> Arrays:
  return list(a)


def _linear_to_ours(a: Arrays) -> Arrays:
  return [a[0].T]


def _conv_to_ours(a: Arrays) -> Arrays:
  return [a[0].transpose(2, 3, 1, 0)]


def _conv_to_timm(a: Arrays) -> Arrays:
  return [a[0].transpose(3, 2, 0, 1)]


def _patch_to_ours(channels: int, patch: int) -> Callable[[Arrays], Arrays]:
  """Accepts the conv weight (D, C, p, p) and the early 2-D Linear (D, C*p*p)."""
  def f(a: Arrays) -> Arrays:
    return [a[0].reshape(a[0].shape[0], channels, patch, patch).transpose(2, 3, 1, 0)]
  return f


def _rule(timm: str, ours: str, to_ours=_same, to_timm=_same) -> Rule:
  return Rule((timm,), (ours,), to_ours, to_timm)


def _linear(timm: str, ours: str, bias: bool = True) -> Iterator[Rule]:
  yield _rule(f'{timm}.weight', f'{ours}/kernel', _linear_to_ours, _linear_to_ours)
  if bias:
    yield _rule(f'{timm}.bias', f'{ours}/bias')


def _norm(timm: str, ours: str) -> Iterator[Rule]:
  yield _rule(f'{timm}.weight', f'{ours}/scale')
  yield _rule(f'{timm}.bias', f'{ours}/bias')


def _attention(timm: str, ours: str, width: int, heads: int, bias: bool) -> Iterator[Rule]:
  hd = width // heads
  qkv = tuple(f'{ours}/{n}' for n in ('query', 'key', 'value'))
  yield Rule((f'{timm}.qkv.weight',), tuple(f'{p}/kernel' for p in qkv),
             lambda a: [w.T.reshape(width, heads, hd) for w in np.split(a[0], 3)],
             lambda a: [np.concatenate([k.reshape(width, width).T for k in a])])
  if bias:
    yield Rule((f'{timm}.qkv.bias',), tuple(f'{p}/bias' for p in qkv),
               lambda a: [b.reshape(heads, hd) for b in np.split(a[0], 3)],
               lambda a: [np.concatenate([b.reshape(-1) for b in a])])
  yield _rule(f'{timm}.proj.weight', f'{ours}/out/kernel',
              lambda a: [a[0].T.reshape(heads, hd, width)],
              lambda a: [a[0].reshape(width, width).T])
  yield _rule(f'{timm}.proj.bias', f'{ours}/out/bias')


def _resnet(stages: tuple[int, ...]) -> Iterator[Rule]:
  bb = 'patch_embed.backbone'
  conv = lambda t, o: _rule(f'{t}.weight', f'{o}/kernel', _conv_to_ours, _conv_to_timm)  # noqa: E731
  yield conv(f'{bb}.stem.conv', 'conv_root')
  yield from _norm(f'{bb}.stem.norm', 'gn_root')
  for s, depth in enumerate(stages):
    for b in range(depth):
      t, o = f'{bb}.stages.{s}.blocks.{b}', f'block{s + 1}/unit{b + 1}'
      if b == 0:
        yield conv(f'{t}.downsample.conv', f'{o}/conv_proj')
        yield from _norm(f'{t}.downsample.norm', f'{o}/gn_proj')
      for i in (1, 2, 3):
        yield conv(f'{t}.conv{i}', f'{o}/conv{i}')
        yield from _norm(f'{t}.norm{i}', f'{o}/gn{i}')


def rules(cfg: ml_collections.ConfigDict) -> list[Rule]:
  """The full rule table for a model config."""
  out: list[Rule] = []  # in timm's state-dict order
  if cfg.classifier == 'token':
    out.append(_rule('cls_token', 'cls'))
  out.append(_rule('pos_embed', 'Transformer/posembed_input/pos_embedding'))
  if cfg.resnet is not None:
    out += _resnet(tuple(cfg.resnet))
    in_channels = 64 * 4 * 2 ** (len(cfg.resnet) - 1)
  else:
    in_channels = 3
  out.append(_rule('patch_embed.proj.weight', 'embedding/kernel',
                   _patch_to_ours(in_channels, cfg.patch_size), _conv_to_timm))
  out.append(_rule('patch_embed.proj.bias', 'embedding/bias'))
  for i in range(cfg.num_layers):
    t, o = f'blocks.{i}', f'Transformer/encoderblock_{i}'
    out += _norm(f'{t}.norm1', f'{o}/LayerNorm_0')
    out += _attention(f'{t}.attn', f'{o}/MultiHeadDotProductAttention_0', cfg.hidden_size,
                      cfg.num_heads, cfg.qkv_bias)
    out += _norm(f'{t}.norm2', f'{o}/LayerNorm_1')
    out += _linear(f'{t}.mlp.fc1', f'{o}/MlpBlock_0/Dense_0')
    out += _linear(f'{t}.mlp.fc2', f'{o}/MlpBlock_0/Dense_1')
  out += _norm('norm' if cfg.classifier == 'token' else 'fc_norm', 'Transformer/encoder_norm')
  if cfg.representation_size is not None:
    out += _linear('pre_logits.fc', 'pre_logits')
  if cfg.num_classes:
    out += _linear('head', 'head')
  return out


def to_ours(sd: dict[str, np.ndarray], table: list[Rule]) -> dict[str, np.ndarray]:
  """Our flat tree from a timm state dict; keys the table lacks are ignored
  here and reported by the caller, which knows both key sets."""
  flat: dict[str, np.ndarray] = {}
  for r in table:
    if all(k in sd for k in r.timm):
      flat.update(zip(r.ours, r.to_ours([np.asarray(sd[k]) for k in r.timm])))
  return flat


def to_timm(flat: dict[str, np.ndarray], table: list[Rule]) -> dict[str, np.ndarray]:
  """A timm state dict (modern layout: conv patch embedding) from our tree."""
  sd: dict[str, np.ndarray] = {}
  for r in table:
    sd.update(zip(r.timm, (np.ascontiguousarray(a) for a in
                           r.to_timm([np.asarray(flat[p]) for p in r.ours]))))
  return sd


def expected_timm_keys(table: list[Rule]) -> set[str]:
  return {k for r in table for k in r.timm}
