"""A small builder for ONNX graphs written from parameters, with `onnx`'s helpers.

Tensors are named after the parameters they hold (`Transformer/encoderblock_0/
...`) and the module scopes that compute them, so a graph viewer reads like
the Flax tree. The builder records which parameters the graph consumed: a
parameter left over means the graph does not express part of the model.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vit_jax.models import vit

# opset 17: LayerNormalization; IR version 8 is what opset 17 needs, so that
# runtimes of 2022 on (ONNX Runtime 1.12, TensorRT 8.6, OpenVINO) load it
OPSET = 17
IR_VERSION = 8


class GraphBuilder:
  """Nodes and initializers of one graph; `op` returns its output's name."""

  def __init__(self, params: dict[str, np.ndarray]):
    self.params = params
    self.consumed: set[str] = set()
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: list[onnx.TensorProto] = []
    self._names: set[str] = set()

  def _unique(self, name: str) -> str:
    out, i = name, 1
    while out in self._names:
      out, i = f'{name}_{i}', i + 1
    self._names.add(out)
    return out

  def param(self, path: str, value: Optional[np.ndarray] = None) -> str:
    """The parameter at `path` as an initializer (`value` replaces it where
    the graph needs it reshaped or folded)."""
    self.consumed.add(path)
    array = self.params[path] if value is None else value
    return self._initializer(path, np.asarray(array, np.float32))

  def const(self, value, name: str, dtype=np.float32) -> str:
    return self._initializer(name, np.asarray(value, dtype))

  def _initializer(self, name: str, array: np.ndarray) -> str:
    name = self._unique(name)
    self.initializers.append(numpy_helper.from_array(np.array(array, order='C'), name))
    return name

  def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs) -> str:
    out = self._unique(name)
    self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
    return out

  def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
            graph_name: str, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers,
                              doc_string=doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='vit-jax', doc_string=doc)
    model.ir_version = IR_VERSION
    return model


def tensor_info(name: str, dims: Sequence) -> onnx.ValueInfoProto:
  """A float32 graph input or output; a str dimension is symbolic."""
  return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


# --- layers -----------------------------------------------------------------

def dense(g: GraphBuilder, x: str, scope: str, bias: bool = True,
          kernel: Optional[np.ndarray] = None) -> str:
  """x @ kernel (+ bias), as flax's Dense; `kernel` replaces the parameter (a
  DenseGeneral's, flattened to 2-D)."""
  y = g.op('MatMul', [x, g.param(f'{scope}/kernel', kernel)], f'{scope}/matmul')
  if bias:
    b = g.params[f'{scope}/bias'].reshape(-1)
    y = g.op('Add', [y, g.param(f'{scope}/bias', b)], f'{scope}/out')
  return y


def layer_norm(g: GraphBuilder, x: str, scope: str, eps: float) -> str:
  return g.op('LayerNormalization', [x, g.param(f'{scope}/scale'), g.param(f'{scope}/bias')],
              f'{scope}/out', axis=-1, epsilon=float(eps))


def gelu(g: GraphBuilder, x: str, scope: str, approximate: bool) -> str:
  """The model's GELU operation for operation: exact x * (0.5 + 0.5 erf(x / sqrt 2)),
  or jax.nn.gelu's tanh form x * 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
  c = lambda v, n: g.const(np.float32(v), f'{scope}/{n}')  # noqa: E731
  if not approximate:
    erf = g.op('Erf', [g.op('Mul', [x, c(0.5 ** 0.5, 'sqrt_half')], f'{scope}/scaled')],
               f'{scope}/erf')
    half = g.op('Mul', [c(0.5, 'half'), erf], f'{scope}/half_erf')
    cdf = g.op('Add', [c(0.5, 'half'), half], f'{scope}/cdf')
    return g.op('Mul', [x, cdf], f'{scope}/out')
  cube = g.op('Mul', [g.op('Mul', [x, x], f'{scope}/square'), x], f'{scope}/cube')
  inner = g.op('Add', [x, g.op('Mul', [c(0.044715, 'coef'), cube], f'{scope}/cubic')],
               f'{scope}/inner')
  t = g.op('Tanh', [g.op('Mul', [c(np.sqrt(2 / np.pi), 'sqrt_2_over_pi'), inner],
                         f'{scope}/arg')], f'{scope}/tanh')
  cdf = g.op('Mul', [c(0.5, 'half'), g.op('Add', [c(1.0, 'one'), t], f'{scope}/one_plus')],
             f'{scope}/cdf')
  return g.op('Mul', [x, cdf], f'{scope}/out')


def first_tokens(g: GraphBuilder, x: str, scope: str, n: int = 1) -> str:
  """x[:, :n] of (batch, tokens, width)."""
  return g.op('Slice', [x, g.const([0], f'{scope}/start', np.int64),
                        g.const([n], f'{scope}/end', np.int64),
                        g.const([1], f'{scope}/axis', np.int64)], f'{scope}/first_tokens')


def attention(g: GraphBuilder, x: str, scope: str, qkv_bias: bool, scale: Optional[float],
              queries: Optional[str] = None) -> str:
  """Multi-head attention over the tokens x, as `MultiHeadDotProductAttention`:
  queries from every token, or from `queries` (the first tokens, or attention
  pooling's probe, whose (1, 1, width) projection broadcasts over the batch);
  `scale` None is head_dim ** -0.5. Heads and widths are the kernels'."""
  width, heads, head_dim = g.params[f'{scope}/query/kernel'].shape
  scale = scale if scale is not None else head_dim ** -0.5
  split = g.const([0, 0, heads, head_dim], f'{scope}/split_shape', np.int64)

  def project(name: str, inputs: str, perm: Sequence[int]) -> str:
    kernel = g.params[f'{scope}/{name}/kernel']  # (width, heads, head_dim)
    y = dense(g, inputs, f'{scope}/{name}', qkv_bias, kernel.reshape(kernel.shape[0], -1))
    if name == 'query':  # the model scales the projected queries
      y = g.op('Mul', [y, g.const(np.float32(scale), f'{scope}/scale')], f'{scope}/scaled_query')
    y = g.op('Reshape', [y, split], f'{scope}/{name}_heads')
    return g.op('Transpose', [y], f'{scope}/{name}_t', perm=list(perm))

  q = project('query', x if queries is None else queries, (0, 2, 1, 3))  # (b, heads, q, head_dim)
  k = project('key', x, (0, 2, 3, 1))  # (batch, heads, head_dim, keys)
  v = project('value', x, (0, 2, 1, 3))  # (batch, heads, keys, head_dim)
  w = g.op('Softmax', [g.op('MatMul', [q, k], f'{scope}/scores')], f'{scope}/weights', axis=-1)
  y = g.op('Transpose', [g.op('MatMul', [w, v], f'{scope}/mixed')], f'{scope}/mixed_t',
           perm=[0, 2, 1, 3])
  y = g.op('Reshape', [y, g.const([0, 0, width], f'{scope}/merge_shape', np.int64)],
           f'{scope}/merged')
  kernel = g.params[f'{scope}/out/kernel']  # (heads, head_dim, width)
  return dense(g, y, f'{scope}/out', kernel=kernel.reshape(-1, kernel.shape[-1]))


def mlp(g: GraphBuilder, x: str, scope: str, approximate: bool) -> str:
  """Dense, GELU, Dense, as `MlpBlock`."""
  y = gelu(g, dense(g, x, f'{scope}/Dense_0'), f'{scope}/gelu', approximate)
  return dense(g, y, f'{scope}/Dense_1')


def encoder_block(g: GraphBuilder, x: str, scope: str, cfg, class_token_only: bool) -> str:
  """x + MHA(LN(x)), then x + MLP(LN(x)), as `Encoder1DBlock`; with
  `class_token_only` the first token's output only."""
  eps = cfg.layer_norm_eps
  y = layer_norm(g, x, f'{scope}/LayerNorm_0', eps)
  queries = first_tokens(g, y, f'{scope}/queries') if class_token_only else None
  y = attention(g, y, f'{scope}/MultiHeadDotProductAttention_0', cfg.qkv_bias, cfg.attn_scale,
                queries)
  if class_token_only:
    x = first_tokens(g, x, f'{scope}/residual')
  x = g.op('Add', [y, x], f'{scope}/attention_residual')
  y = mlp(g, layer_norm(g, x, f'{scope}/LayerNorm_1', eps), f'{scope}/MlpBlock_0',
          cfg.gelu_approximate)
  return g.op('Add', [x, y], f'{scope}/out')


def prepend_class_token(g: GraphBuilder, x: str, cfg) -> str:
  """The learned class token, tiled over the batch, before the tokens."""
  batch = g.op('Shape', [x], 'batch_size', start=0, end=1)
  shape = g.op('Concat', [batch, g.const([1, cfg.hidden_size], 'cls_shape', np.int64)],
               'cls_tiled_shape', axis=0)
  cls = g.op('Expand', [g.param('cls'), shape], 'cls_tiled')
  return g.op('Concat', [cls, x], 'tokens', axis=1)


def add_position_embeddings(g: GraphBuilder, x: str, cfg, grid: int, class_slot: bool) -> str:
  """The learned embeddings, or the fixed sin-cos ones of the grid as a
  constant of the graph (`vit.posemb_sincos_2d`'s values), zero at the class
  token's slot when it is already there (as `AddPositionEmbs`)."""
  scope = 'Transformer/posembed_input'
  if cfg.posemb == 'learn':
    pe = g.param(f'{scope}/pos_embedding')
  else:
    table = np.asarray(vit.posemb_sincos_2d(grid, grid, cfg.hidden_size), np.float32)
    pe = g.const(np.pad(table, ((0, 0), (int(class_slot), 0), (0, 0))), f'{scope}/sincos2d')
  return g.op('Add', [x, pe], f'{scope}/out')


def map_head(g: GraphBuilder, x: str, cfg) -> str:
  """Attention pooling, as `MAPHead`: the learned probe the only query (with
  the attention's own defaults: biases, head_dim ** -0.5), then a pre-norm MLP
  residual; (batch, 1, width)."""
  scope = 'MAPHead_0'
  y = attention(g, x, f'{scope}/MultiHeadDotProductAttention_0', True, None,
                queries=g.param(f'{scope}/probe'))
  z = mlp(g, layer_norm(g, y, f'{scope}/LayerNorm_0', cfg.layer_norm_eps), f'{scope}/MlpBlock_0',
          cfg.gelu_approximate)
  return g.op('Add', [y, z], f'{scope}/out')


def pre_logits_width(cfg) -> Optional[int]:
  """The pre-logits layer's width as the model reads `representation_size`:
  None, False or 0 none; True the model's width."""
  rep = cfg.representation_size
  return cfg.hidden_size if rep is True else (rep or None)


def tokens_to_logits(g: GraphBuilder, x: str, cfg, grid: int) -> str:
  """(batch, grid * grid, width) embedded patches to the logits: class token
  and position embeddings (in the model's order), the blocks, the final
  LayerNorm, pooling (class token, mean, attention pooling or first patch
  token) and the head."""
  token = cfg.classifier == 'token'
  if token and cfg.posemb_class_token:
    x = prepend_class_token(g, x, cfg)
  x = add_position_embeddings(g, x, cfg, grid, class_slot=token and cfg.posemb_class_token)
  if token and not cfg.posemb_class_token:
    x = prepend_class_token(g, x, cfg)
  for i in range(cfg.num_layers):
    x = encoder_block(g, x, f'Transformer/encoderblock_{i}', cfg,
                      cfg.classifier in ('token', '0') and i == cfg.num_layers - 1)
  x = layer_norm(g, x, 'Transformer/encoder_norm', cfg.layer_norm_eps)
  if cfg.classifier == 'gap':
    x = g.op('ReduceMean', [x], 'pooled', axes=[1], keepdims=0)
  else:
    x = map_head(g, x, cfg) if cfg.classifier == 'map' else x
    x = g.op('Gather', [x, g.const(0, 'first_token_index', np.int64)], 'pooled', axis=1)
  if pre_logits_width(cfg):
    x = g.op('Tanh', [dense(g, x, 'pre_logits')], 'pre_logits/tanh')
  if cfg.num_classes:
    x = dense(g, x, 'head')
  return x
