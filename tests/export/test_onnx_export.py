"""The ONNX writer's refusals and its folding of the hybrid's stem (the
graphs themselves run in ONNX Runtime in test_export.py)."""
import jax
import numpy as np
import pytest

import vit_jax
from vit_jax.export import onnx_export, onnx_resnet
from vit_jax.models.resnet import weight_standardize


@pytest.mark.parametrize('field, value, named', [
    ('classifier', 'mean', "classifier 'mean'"),
    ('posemb', 'rope', "posemb 'rope'"),
    ('register_tokens', 4, 'field register_tokens=4'),  # a field the writer does not know
])
def test_what_the_graph_cannot_express_is_named(field, value, named):
  cfg = vit_jax.get_model_config('vit_base_patch16_224')
  cfg[field] = value
  with pytest.raises(ValueError, match='cannot be written as ONNX') as e:
    onnx_export.check_expressible(cfg)
  assert named in str(e.value) and '\n' not in str(e.value)


def test_training_only_fields_and_every_registered_model_are_expressible():
  cfg = vit_jax.get_model_config('vit_base_patch16_224', dropout_rate=0.1, remat=True)
  cfg.drop_path_rate, cfg.head_zeroinit = 0.2, False
  onnx_export.check_expressible(cfg)
  for name in vit_jax.list_models():
    onnx_export.check_expressible(vit_jax.get_model_config(name))


@pytest.mark.parametrize('size, kernel, stride', [(64, 7, 2), (32, 3, 2), (31, 3, 2),
                                                   (16, 3, 1), (16, 1, 2), (15, 1, 2)])
def test_same_pads_are_tensorflows(size, kernel, stride):
  want = jax.lax.padtype_to_pads((size,), (kernel,), (stride,), 'SAME')[0]
  assert onnx_resnet.same_pads(size, kernel, stride) == tuple(want)


def test_folded_kernels_are_the_models_standardised_ones():
  rng = np.random.RandomState(0)
  params = {'conv_root/kernel': rng.randn(7, 7, 3, 64).astype(np.float32) * 3 + 1,
            'block1/unit1/conv2/kernel': rng.randn(3, 3, 8, 8).astype(np.float32),
            'embedding/kernel': rng.randn(1, 1, 8, 4).astype(np.float32)}
  folded = onnx_resnet.standardized_kernels(params)
  assert sorted(folded) == ['block1/unit1/conv2/kernel', 'conv_root/kernel']  # not the embedding
  for key, w in folded.items():
    np.testing.assert_allclose(w, np.asarray(jax.jit(weight_standardize)(params[key])),
                               rtol=2e-6, atol=2e-6)
