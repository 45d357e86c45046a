"""Release layout <-> scan_layers layout of the encoder blocks."""
import numpy as np
import pytest
from flax import traverse_util

from vit_jax.checkpoints import scan_layout


def _release(depth=3):
  rng = np.random.RandomState(0)
  blocks = {f'encoderblock_{i}': {'LayerNorm_0': {'scale': rng.randn(4)},
                                  'MlpBlock_0': {'Dense_0': {'kernel': rng.randn(4, 8)}}}
            for i in range(depth)}
  return {'cls': rng.randn(1, 1, 4),
          'Transformer': {**blocks, 'encoder_norm': {'scale': rng.randn(4)}}}


def test_stack_puts_the_layer_axis_first_and_unstack_inverts_it():
  params = _release()
  stacked = scan_layout.stack_blocks(params)
  enc = stacked['Transformer']
  assert sorted(enc) == ['encoder_norm', 'encoderblock']
  kernel = enc['encoderblock']['MlpBlock_0']['Dense_0']['kernel']
  assert kernel.shape == (3, 4, 8)
  np.testing.assert_array_equal(
      kernel[2], params['Transformer']['encoderblock_2']['MlpBlock_0']['Dense_0']['kernel'])
  back = scan_layout.unstack_blocks(stacked)
  a, b = traverse_util.flatten_dict(params), traverse_util.flatten_dict(back)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert scan_layout.is_stacked(stacked) and not scan_layout.is_stacked(back)


def test_converting_to_the_layout_a_tree_has_is_a_no_op():
  params, stacked = _release(), scan_layout.stack_blocks(_release())
  assert scan_layout.unstack_blocks(params) is params
  assert scan_layout.stack_blocks(stacked) is stacked


def test_a_gap_in_the_block_numbers_is_refused():
  params = _release(3)
  del params['Transformer']['encoderblock_1']
  with pytest.raises(ValueError, match=r'encoder blocks \[0, 2\] are not numbered'):
    scan_layout.stack_blocks(params)
