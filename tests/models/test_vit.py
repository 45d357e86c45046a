"""The Flax ViT: attention maths, dtypes, dropout, remat, scan and pooling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vit_jax
from vit_jax.models import vit
from vit_jax.checkpoints import scan_layout
from conftest import jit_apply, jit_init

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=4,
            mlp_dim=64, num_classes=10)


def _init(**kw):
  model = vit_jax.create_model('vit_base_patch16_224', **{**TINY, **kw})
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = jit_init(model, x)['params']
  # a zero-initialised head would hide everything behind it
  head = params['head']['kernel']
  params['head']['kernel'] = jax.random.normal(jax.random.PRNGKey(2), head.shape)
  return model, params, x


@pytest.mark.parametrize('scale', [None, 32 ** -0.5])
def test_attention_matches_a_direct_computation(scale):
  mha = vit.MultiHeadDotProductAttention(num_heads=4, qkv_bias=True, scale=scale)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 32))
  p = jit_init(mha, x, seed=1)['params']
  p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(3), a.shape), p)
  y = jit_apply(mha, {'params': p}, x)
  xn, P = np.asarray(x, np.float64), jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  q, k, v = (np.einsum('btd,dhe->bthe', xn, P[n]['kernel']) + P[n]['bias']
             for n in ('query', 'key', 'value'))
  s = scale if scale is not None else 8 ** -0.5
  logits = np.einsum('bqhe,bkhe->bhqk', q, k) * s
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  o = np.einsum('bhqk,bkhe->bqhe', w, v)
  ref = np.einsum('bqhe,hed->bqd', o, P['out']['kernel']) + P['out']['bias']
  np.testing.assert_allclose(np.asarray(y), ref, atol=2e-5)


def test_qkv_bias_off_removes_the_biases():
  model, params, _ = _init(qkv_bias=False)
  attn = params['Transformer']['encoderblock_0']['MultiHeadDotProductAttention_0']
  assert 'bias' not in attn['query'] and 'bias' in attn['out']


def test_bfloat16_compute_keeps_float32_params_and_close_logits():
  model, params, x = _init()
  bf16 = vit_jax.create_model('vit_base_patch16_224', **TINY, dtype='bfloat16')
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(
      jit_init(bf16, x)['params']))
  ref = jit_apply(model, {'params': params}, x)
  out = jit_apply(bf16, {'params': params}, x)
  assert out.dtype == jnp.float32
  out, ref = np.asarray(out), np.asarray(ref)
  rel = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
  assert 0 < rel < 0.05


def test_dropout_needs_an_rng_and_is_reproducible():
  model, params, x = _init(dropout_rate=0.3, attention_dropout_rate=0.2)
  with pytest.raises(Exception, match='dropout'):
    jit_apply(model, {'params': params}, x, train=True)
  a = jit_apply(model, {'params': params}, x, train=True, rngs={'dropout': jax.random.PRNGKey(5)})
  b = jit_apply(model, {'params': params}, x, train=True, rngs={'dropout': jax.random.PRNGKey(5)})
  c = jit_apply(model, {'params': params}, x, train=True, rngs={'dropout': jax.random.PRNGKey(6)})
  e = jit_apply(model, {'params': params}, x, train=False)
  np.testing.assert_array_equal(a, b)
  a, c, e = np.asarray(a), np.asarray(c), np.asarray(e)
  assert np.abs(a - c).max() > 1e-3 and np.abs(a - e).max() > 1e-3
  # evaluation ignores the rates: the same logits as a model without dropout
  plain, _, _ = _init()
  np.testing.assert_allclose(e, jit_apply(plain, {'params': params}, x), atol=1e-6)


def _assert_close_to_scale(got, ref, tol: float):
  """Every leaf of `got` within `tol` of `ref`'s largest gradient (on the host:
  a comparison per leaf on the device would compile one program per shape)."""
  got, ref = ([np.asarray(a) for a in jax.tree.leaves(t)] for t in (got, ref))
  scale = max(np.abs(b).max() for b in ref)
  for a, b in zip(got, ref):
    assert np.abs(a - b).max() <= tol * scale


@pytest.mark.parametrize('policy', [None, 'dots_with_no_batch_dims_saveable'])
def test_remat_gives_the_same_logits_and_gradients(policy):
  model, params, x = _init()
  remat = vit_jax.create_model('vit_base_patch16_224', **TINY, remat=True, remat_policy=policy)
  loss = lambda m: lambda p: jnp.sum(m.apply({'params': p}, x, train=True) ** 2)  # noqa: E731
  g0, g1 = jax.jit(jax.grad(loss(model)))(params), jax.jit(jax.grad(loss(remat)))(params)
  # relative to the gradient's scale: some leaves are all cancellation noise
  _assert_close_to_scale(g0, g1, 1e-5)


def test_global_average_pooling_has_no_class_token():
  model, params, x = _init(classifier='gap')
  assert 'cls' not in params
  assert params['Transformer']['posembed_input']['pos_embedding'].shape == (1, 16, 32)
  assert jit_apply(model, {'params': params}, x).shape == (2, 10)


def test_representation_layer_and_headless_features():
  model, params, x = _init(representation_size=24)
  assert params['pre_logits']['kernel'].shape == (32, 24)
  feats = vit_jax.create_model('vit_base_patch16_224', **{**TINY, 'num_classes': 0},
                               representation_size=24)
  p = {k: v for k, v in params.items() if k != 'head'}
  f = jit_apply(feats, {'params': p}, x)
  assert f.shape == (2, 24) and np.abs(np.asarray(f)).max() <= 1.0  # tanh
  np.testing.assert_allclose(jit_apply(model, {'params': params}, x),
                             f @ params['head']['kernel'] + params['head']['bias'], atol=1e-5)


def test_unknown_remat_policy_is_one_clear_error():
  model = vit_jax.create_model('vit_base_patch16_224', **TINY, remat=True, remat_policy='fast')
  with pytest.raises(ValueError, match="remat_policy 'fast' is not a jax.checkpoint_policies"):
    jit_init(model, jnp.zeros((1, 32, 32, 3)))


def test_class_token_only_block_is_the_first_row_of_the_full_block():
  block = vit.Encoder1DBlock(mlp_dim=64, num_heads=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 32))
  p = jit_init(block, x, seed=1)
  full = jit_apply(block, p, x)
  first = jit_apply(block, p, x, deterministic=True, class_token_only=True)
  assert first.shape == (2, 1, 32)
  np.testing.assert_allclose(np.asarray(first), np.asarray(full[:, :1]), atol=1e-5)


@pytest.mark.parametrize('kw', [{}, {'remat': True}, {'classifier': 'gap'}])
def test_scanned_blocks_match_the_unrolled_model(kw):
  """Same logits and gradients from the stacked parameters; the unrolled
  class-token model computes only the class token in its last block, the
  scanned one everything, so this also checks that shortcut."""
  model, params, x = _init(**kw)
  scanned = vit_jax.create_model('vit_base_patch16_224', **TINY, scan_layers=True, **kw)
  stacked = scan_layout.stack_blocks(params)
  assert jax.tree.map(jnp.shape, stacked) == jax.tree.map(
      jnp.shape, jax.eval_shape(scanned.init, jax.random.PRNGKey(0), x)['params'])
  np.testing.assert_allclose(jit_apply(scanned, {'params': stacked}, x),
                             jit_apply(model, {'params': params}, x), atol=2e-5)
  loss = lambda m: lambda p: jnp.sum(m.apply({'params': p}, x, train=True) ** 2)  # noqa: E731
  g0 = jax.jit(jax.grad(loss(model)))(params)
  g1 = scan_layout.unstack_blocks(jax.jit(jax.grad(loss(scanned)))(stacked))
  _assert_close_to_scale(g1, g0, 1e-5)


def test_exact_gelu_and_its_gradient_match_float64():
  """x * Phi(x) through erf: float32-accurate in absolute terms, as PyTorch's."""
  from math import erf, pi, sqrt
  xs = np.linspace(-9.0, 9.0, 3601, dtype=np.float32)
  phi = np.array([0.5 * (1 + erf(x / sqrt(2))) for x in xs.astype(np.float64)])
  want = xs * phi
  want_grad = phi + xs * np.exp(-0.5 * xs.astype(np.float64) ** 2) / sqrt(2 * pi)
  got = jax.jit(lambda x: vit.gelu(x, approximate=False))(xs)
  grad = jax.jit(jax.vmap(jax.grad(lambda x: vit.gelu(x, approximate=False))))(xs)
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, rtol=2e-6, atol=2e-6)
  approx = vit.gelu(jnp.asarray(xs), approximate=True)
  np.testing.assert_array_equal(approx, jax.nn.gelu(jnp.asarray(xs), approximate=True))
  assert np.abs(np.asarray(approx) - want).max() > 1e-4  # the two forms do differ


# --- big_vision's options ---------------------------------------------------

def _shapes(**kw) -> dict:
  """Flat parameter shapes of a TINY twin, from tracing alone."""
  from flax import traverse_util
  model = vit_jax.create_model('vit_base_patch16_224', **{**TINY, **kw})
  tree = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))['params']
  return {k: v.shape for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def test_sincos2d_position_embeddings_follow_big_visions_formula():
  """(1, h * w, width): sin(x), cos(x), sin(y), cos(y) at frequencies
  10000 ** -(i / (width / 4 - 1)), x the column and y the row of a patch."""
  h, w, width = 3, 5, 16
  got = np.asarray(jax.jit(vit.posemb_sincos_2d, static_argnums=(0, 1, 2))(h, w, width))
  omega = 10000.0 ** -(np.arange(width // 4) / (width // 4 - 1))
  y, x = np.mgrid[:h, :w]
  x, y = np.outer(x.ravel(), omega), np.outer(y.ravel(), omega)
  want = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None]
  np.testing.assert_allclose(got, want, atol=1e-6)
  with pytest.raises(ValueError, match='divisible by 4'):
    vit.posemb_sincos_2d(2, 2, 6)


def test_position_embedding_kinds_and_the_class_slot():
  pos = 'Transformer/posembed_input/pos_embedding'
  assert _shapes()[pos] == (1, 17, 32)  # the official code's: the class token has a slot
  assert _shapes(posemb_class_token=False)[pos] == (1, 16, 32)  # big_vision's
  shapes = _shapes(posemb='sincos2d')
  assert pos not in shapes and 'cls' in shapes  # fixed: no parameter; the class token gets none
  for kw, message in (({'posemb': 'rope'}, "posemb must be one of"),
                      ({'classifier': 'mean'}, "classifier must be one of")):
    with pytest.raises(ValueError, match=message):
      _shapes(**kw)


def test_pooling_and_pre_logits_fields():
  map_head = {k: s for k, s in _shapes(classifier='map').items() if k.startswith('MAPHead_0/')}
  assert map_head['MAPHead_0/probe'] == (1, 1, 32)
  assert map_head['MAPHead_0/MultiHeadDotProductAttention_0/query/kernel'] == (32, 4, 8)
  assert map_head['MAPHead_0/MlpBlock_0/Dense_0/kernel'] == (32, 64)
  assert 'cls' not in _shapes(classifier='0') and 'cls' not in _shapes(classifier='map')
  assert _shapes(representation_size=True)['pre_logits/kernel'] == (32, 32)
  assert 'pre_logits/kernel' not in _shapes(representation_size=False)
  cfg = vit_jax.get_model_config('vit_base_patch16_224', **TINY, representation_size=True,
                                 classifier=0)  # as --set gives them
  assert (cfg.representation_size, cfg.classifier) == (32, '0')


def test_head_zeroinit_off_is_flaxs_dense_init():
  model = vit_jax.create_model('vit_base_patch16_224', **{**TINY, 'num_layers': 1},
                               head_zeroinit=False)
  kernel = np.asarray(jit_init(model, jnp.zeros((1, 32, 32, 3)))['params']['head']['kernel'])
  assert 0.5 < kernel.std() * np.sqrt(32) < 1.5  # lecun normal: std 1 / sqrt(fan_in)


def test_drop_path_drops_whole_examples_and_scales_the_kept():
  x = jnp.ones((4000, 3, 2))
  drop = jax.jit(lambda x, rate: vit.DropPath().apply(
      {}, x, rate, False, rngs={'dropout': jax.random.PRNGKey(0)}))
  per_example = np.asarray(drop(x, 0.25)).reshape(4000, -1)
  assert set(np.unique(per_example.std(axis=1))) == {0.0}  # all or nothing per example
  dropped = (per_example[:, 0] == 0).mean()
  assert abs(dropped - 0.25) < 0.03
  np.testing.assert_allclose(per_example[per_example[:, 0] > 0], 1 / 0.75, rtol=1e-6)
  assert not np.asarray(drop(x, 1.0)).any()
  np.testing.assert_array_equal(vit.DropPath().apply({}, x, 0.25, True), x)


def _drop_path_rates(model, train: bool) -> list:
  """The rate each DropPath call gets while `model.apply` is traced."""
  import flax.linen as nn
  rates = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, vit.DropPath):
      rates.append(args[1])
    return next_fun(*args, **kwargs)
  x = jnp.zeros((2, 32, 32, 3))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params']
  with nn.intercept_methods(record):
    jax.make_jaxpr(lambda p: model.apply({'params': p}, x, train=train,
                                         rngs={'dropout': jax.random.PRNGKey(1)}))(params)
  return rates


def test_drop_path_grows_linearly_over_depth_and_only_in_training():
  """timm's and AugReg's schedule: linspace(0, rate, depth), both branches of
  each block; nothing at all in evaluation or at rate 0 (the program is the
  one without it)."""
  kw = {**TINY, 'num_layers': 3}
  model = vit_jax.create_model('vit_base_patch16_224', **kw, drop_path_rate=0.2)
  rates = _drop_path_rates(model, train=True)
  np.testing.assert_allclose(rates, [0.0, 0.0, 0.1, 0.1, 0.2, 0.2], atol=1e-7)
  plain = vit_jax.create_model('vit_base_patch16_224', **kw)
  assert _drop_path_rates(plain, train=True) == [None] * 6
  scanned = vit_jax.create_model('vit_base_patch16_224', **kw, drop_path_rate=0.2,
                                 scan_layers=True, remat=True)
  traced = _drop_path_rates(scanned, train=True)  # one body, the rates scanned over
  assert traced and all(isinstance(r, jax.core.Tracer) for r in traced)
  x = jnp.zeros((2, 32, 32, 3))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)['params']
  jaxpr = lambda m: str(jax.make_jaxpr(  # noqa: E731
      lambda p: m.apply({'params': p}, x, train=False))(params))
  assert jaxpr(model) == jaxpr(plain)
  with pytest.raises(Exception, match='dropout'):
    jax.make_jaxpr(lambda p: model.apply({'params': p}, x, train=True))(params)
