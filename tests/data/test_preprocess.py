"""Eval preprocessing against timm's transform on real photographs."""
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from vit_jax.data.preprocess import center_crop, decode_rgb, eval_crop, eval_crop_box, normalize
from conftest import SQUASH_SETTINGS, data_path, fixture_photo, synthetic_photos

SETTINGS = {'crops_224_0.9': (224, 0.9), 'crops_384_1.0': (384, 1.0)}


def _photos():
  """The photos the fixture was made from, decoded as timm's script did."""
  ref = np.load(data_path('preprocess', 'timm_eval_crops.npz'))
  for i, ident in enumerate(ref['ids']):
    yield ident, fixture_photo(ident), {k: ref[k][i] for k in SETTINGS}, tuple(ref['shapes'][i])


def test_crops_match_timm_on_every_photo():
  """Mean absolute difference per image, in [0, 1] units, after normalising
  both the same way (mean = std = 0.5): must stay under 0.5/255."""
  seen = 0
  for ident, img, ref, shape in _photos():
    assert img.size[::-1] == shape, f'{ident}: the installed photo changed'
    for key, (size, crop_pct) in SETTINGS.items():
      ours = normalize(eval_crop(img, size, crop_pct), (0.5,) * 3, (0.5,) * 3)
      theirs = normalize(ref[key], (0.5,) * 3, (0.5,) * 3)
      mad = float(np.abs(ours - theirs).mean()) * 0.5  # std 0.5: back to [0, 1] units
      assert ours.shape == (size, size, 3)
      assert mad < 0.5 / 255, (ident, key, mad * 255)
      # PIL in both: in fact byte-identical
      np.testing.assert_array_equal(eval_crop(img, size, crop_pct), ref[key])
    seen += 1
  assert seen == 28


def test_a_resize_without_antialiasing_would_fail_the_threshold():
  """The threshold tells antialiased bicubic from plain bicubic sampling."""
  worst = 0.0
  for ident, img, ref, _ in _photos():
    w, h = img.size
    s = int(224 / 0.9) / min(w, h)
    arr = np.asarray(img, np.float32)
    ys = np.clip(((np.arange(round(h * s)) + 0.5) / s - 0.5).round().astype(int), 0, h - 1)
    xs = np.clip(((np.arange(round(w * s)) + 0.5) / s - 0.5).round().astype(int), 0, w - 1)
    naive = Image.fromarray(arr[ys][:, xs].astype(np.uint8))
    crop = np.asarray(center_crop(naive, 224), np.float32)
    worst = max(worst, float(np.abs(crop - ref['crops_224_0.9'].astype(np.float32)).mean()))
  assert worst > 0.5


@pytest.mark.parametrize('mode', ['L', 'P', 'CMYK', 'RGBA', 'LA', 'I;16'])
def test_decode_converts_every_mode_to_rgb(mode):
  base = Image.fromarray(np.random.RandomState(0).randint(0, 255, (20, 30, 3), np.uint8))
  img = base.convert(mode) if mode != 'I;16' else base.convert('L').convert('I;16')
  fmt = 'TIFF' if mode in ('CMYK', 'I;16') else 'PNG'
  buf = io.BytesIO()
  img.save(buf, fmt)
  rgb = decode_rgb(buf.getvalue())
  assert rgb.mode == 'RGB' and rgb.size == (30, 20)


def test_resize_keeps_aspect_and_truncates_like_torchvision():
  img = Image.new('RGB', (500, 333))
  out = eval_crop(img, 224, 0.9)
  assert out.shape == (224, 224, 3)
  from vit_jax.data.preprocess import resize_shorter_side
  assert resize_shorter_side(img, 248).size == (372, 248)  # int(248 * 500 / 333) = 372
  x = normalize(np.full((2, 2, 3), 255, np.uint8), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  np.testing.assert_allclose(x[0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                       (1 - 0.406) / 0.225], rtol=1e-6)


def test_squash_crops_equal_timms_byte_for_byte():
  ref = json.load(open(data_path('hf', 'squash_crops.json')))
  seen = 0
  for ident, img in synthetic_photos():
    for key, (size, crop_pct, interpolation) in SQUASH_SETTINGS.items():
      crop = eval_crop(img, size, crop_pct, interpolation, crop_mode='squash')
      assert crop.shape == (size, size, 3)
      assert hashlib.sha256(crop.tobytes()).hexdigest() == ref[ident][key], (ident, key)
      seen += 1
  assert seen == 18 == sum(len(v) for v in ref.values())


def test_squash_keeps_the_whole_picture_and_center_crops_its_sides():
  img = np.full((333, 500, 3), 128, np.uint8)
  img[:, :40] = (255, 0, 0)  # a red band at the left edge, 8% of the width
  pic = Image.fromarray(img)
  squash = eval_crop(pic, 224, 1.0, crop_mode='squash')
  center = eval_crop(pic, 224, 1.0)  # 336x224: 56 columns (83 of the picture's) cut each side
  assert (squash[:, :16, 1] == 0).all() and (squash[:, 20:, 1] == 128).all()
  assert (center == 128).all()
  assert eval_crop_box(500, 333, 224, 1.0, 'squash') == (0.0, 0.0, 500.0, 333.0)
  np.testing.assert_allclose(eval_crop_box(500, 333, 224, 0.875, 'squash'),
                             (31.25, 20.8125, 468.75, 312.1875))
  with pytest.raises(ValueError,
                     match="crop_mode must be one of .'center', 'squash', 'big_vision'., got 'x'"):
    eval_crop(pic, 224, 1.0, crop_mode='x')
