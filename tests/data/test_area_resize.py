"""TensorFlow's area resize and big_vision's eval crop, against big_vision's
own preprocessing (`resize_small(256) | central_crop(224)`, run by
tools/make_big_vision_fixtures.py) on 28 real photographs."""
import numpy as np
import pytest
from PIL import Image

import vit_jax
from vit_jax.data import area_resize
from vit_jax.data.preprocess import eval_crop, resize_small_size
from conftest import data_path, fixture_photo

STRIDE, START = 8, 3  # the fixture keeps every 8th pixel of each crop, from (3, 3)


def _photos():
  """(id, decoded RGB image, big_vision's sampled crop, resized (H, W))."""
  ref = np.load(data_path('big_vision', 'area_resize.npz'))
  for ident, shape, crop, resized in zip(ref['ids'], ref['shapes'], ref['crops'], ref['resized']):
    img = fixture_photo(ident)
    assert img.size[::-1] == tuple(shape), f'{ident}: the installed photo changed'
    yield ident, img, crop, tuple(resized)


@pytest.fixture(scope='module')
def crops():
  """Our eval crops with the registered S/16 baseline's preprocessing."""
  cfg = vit_jax.get_model_config('vit_s16_i1k_90ep')
  out = []
  for ident, img, ref, resized in _photos():
    ours = eval_crop(img, cfg.image_size, cfg.crop_pct, cfg.interpolation, cfg.crop_mode)
    out.append((ident, img, ours, ref, resized))
  assert len(out) == 28
  return out


def test_big_visions_crops_within_one_level_on_every_photo(crops):
  """Within one level of 255 everywhere (measured: identical); the sizes
  big_vision resizes to exactly (its float32 rounding of the long side)."""
  identical = total = 0
  for ident, img, ours, ref, resized in crops:
    assert resize_small_size(*img.size, 256)[::-1] == resized, ident
    sampled = ours[START::STRIDE, START::STRIDE].astype(int)
    assert ours.shape == (224, 224, 3) and sampled.shape == ref.shape
    assert np.abs(sampled - ref).max() <= 1, ident
    identical += int((sampled == ref).sum())
    total += ref.size
  assert identical >= 0.999 * total


def test_other_resizes_and_timms_crop_would_fail_the_check(crops):
  """The fixture tells the area resize from PIL's box filter and bilinear,
  and big_vision's crop offsets from timm's (one pixel on odd margins)."""
  worst = {'box': 0, 'bilinear': 0, 'center': 0}
  for ident, img, ours, ref, resized in crops:
    for name, mode in (('box', Image.BOX), ('bilinear', Image.BILINEAR)):
      other = np.asarray(img.resize(resized[::-1], mode))
      top, left = (resized[0] - 224) // 2, (resized[1] - 224) // 2
      other = other[top:top + 224, left:left + 224][START::STRIDE, START::STRIDE]
      worst[name] = max(worst[name], np.abs(other.astype(int) - ref).max())
    timm = eval_crop(img, 224, 0.875, 'area', 'center')[START::STRIDE, START::STRIDE]
    worst['center'] = max(worst['center'], np.abs(timm.astype(int) - ref).max())
  assert min(worst.values()) > 1, worst


def test_area_resize_averages_boxes():
  """A 4x6 image to 2x3: each output pixel the mean of a 2x2 block; up by 2:
  each pixel repeated (a box within one pixel takes that pixel)."""
  img = np.arange(4 * 6 * 1, dtype=np.uint8).reshape(4, 6, 1) * 10
  down = area_resize.resize(img, 2, 3)
  want = img.reshape(2, 2, 3, 2, 1).astype(np.float64).mean(axis=(1, 3))
  np.testing.assert_allclose(down, want, rtol=1e-6)
  up = area_resize.resize(img, 8, 12)
  np.testing.assert_allclose(up, np.repeat(np.repeat(img, 2, 0), 2, 1), rtol=1e-6)
  assert area_resize.resize_uint8(np.full((3, 3, 3), 255, np.uint8), 2, 2).max() <= 255
