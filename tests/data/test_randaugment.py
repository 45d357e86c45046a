"""big_vision's RandAugment: every op against TensorFlow running big_vision's
own code (tools/make_randaugment_fixture.py; tensorflow-cpu 2.21.0,
big_vision at 0127fb6), and against a plain statement of its formula here
(PIL where PIL has the op, else float32 arithmetic pixel by pixel)."""
import hashlib
import math

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import data_path
from vit_jax.data import randaugment as ra

F32 = np.float32


@pytest.fixture(scope='module')
def tf_outputs():
  return dict(np.load(data_path('randaugment', 'big_vision_ops.npz')))


def _case(key):
  """(image name, op, magnitude, negate, Cutout centre) of a fixture key."""
  name, op, tag = key.split('/')
  center = None
  if '@' in tag:
    tag, at = tag.split('@')
    center = tuple(int(v) for v in at.split(','))
  return name, op, float(tag.rstrip('+-')), tag.endswith('-'), center


def test_every_op_at_every_magnitude_is_what_big_visions_tensorflow_computes(tf_outputs):
  cases = [k for k in tf_outputs if not k.endswith('/input')]
  assert {_case(k)[1] for k in cases} == set(ra.OPS)
  assert {_case(k)[2] for k in cases} >= {0, 5, 10, 15, 20, 30}
  full = 0
  for key in cases:
    name, op, magnitude, negate, center = _case(key)
    got = ra.apply_op(tf_outputs[f'{name}/input'], op, magnitude, negate, center)
    want = tf_outputs[key]
    if want.shape == got.shape:  # kept whole (magnitude 10 of the small images)
      full += 1
      assert np.count_nonzero(got != want) == 0, key
    else:  # kept as its SHA-256
      assert hashlib.sha256(got.tobytes()).digest() == want.tobytes(), key
  assert len(cases) > 1200 and full > 40


def test_the_magnitude_table_is_big_visions():
  table = {op: ra.argument(op, 10) for op in ra.OPS}
  assert table == pytest.approx({'AutoContrast': None, 'Equalize': None, 'Invert': None, 'Rotate': 30.0,
                   'Posterize': 4, 'Solarize': 256, 'Color': 1.9, 'Contrast': 1.9,
                   'Brightness': 1.9, 'Sharpness': 1.9, 'ShearX': 0.3, 'ShearY': 0.3,
                   'TranslateX': 100.0, 'TranslateY': 100.0, 'Cutout': 40, 'SolarizeAdd': 110},
                                abs=1e-12)
  assert ra.argument('Posterize', 3) == 1 and ra.argument('Solarize', 15) == 384
  assert ra.argument('Cutout', 20) == 80 and ra.argument('Color', 0) == pytest.approx(0.1)


@pytest.fixture(scope='module')
def image():
  rng = np.random.default_rng(5)
  img = rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)
  img[:4, :5] = (3, 120, 250)  # a flat patch
  return img


def _pil(op, img, *args):
  return np.asarray(op(Image.fromarray(img), *args))


def test_point_ops_are_pils_with_big_visions_uint8_wrapping(image):
  assert np.array_equal(ra.apply_op(image, 'Equalize', 3), _pil(ImageOps.equalize, image))
  assert np.array_equal(ra.apply_op(image, 'Invert', 3), _pil(ImageOps.invert, image))
  for magnitude, bits in ((5, 2), (7.5, 3), (10, 4), (20, 8)):
    assert np.array_equal(ra.apply_op(image, 'Posterize', magnitude),
                          _pil(ImageOps.posterize, image, bits))
  # bits 0 (M < 2.5) and past 8 (M >= 22.5): the shift is clamped to 7, the top bit kept
  for magnitude in (0, 2, 22.5, 30):
    assert np.array_equal(ra.apply_op(image, 'Posterize', magnitude), image & 0x80)
  for magnitude, threshold in ((1, 25), (5, 128), (9, 230)):
    assert np.array_equal(ra.apply_op(image, 'Solarize', magnitude),
                          _pil(ImageOps.solarize, image, threshold))
  # the threshold wraps in uint8: 256 -> 0 inverts everything, 384 -> 128
  assert np.array_equal(ra.apply_op(image, 'Solarize', 10), 255 - image)
  assert np.array_equal(ra.apply_op(image, 'Solarize', 15), _pil(ImageOps.solarize, image, 128))
  for magnitude in (3, 10, 20):
    add = int(magnitude / 10 * 110)
    want = np.where(image < 128, np.minimum(image.astype(int) + add, 255), image)
    assert np.array_equal(ra.apply_op(image, 'SolarizeAdd', magnitude), want)


def test_autocontrast_stretches_each_channel_in_float32():
  rng = np.random.default_rng(1)
  img = rng.integers(40, 200, (9, 11, 3)).astype(np.uint8)
  img[..., 2] = 17  # a flat channel stays as it is
  got = ra.apply_op(img, 'AutoContrast', 0)
  for c in range(2):
    lo, hi = F32(img[..., c].min()), F32(img[..., c].max())
    scale = F32(255.0) / F32(hi - lo)
    for v, out in zip(img[..., c].ravel(), got[..., c].ravel()):
      assert out == int(min(max(F32(F32(v) * scale) + F32(-lo * scale), 0), 255))
  assert (got[..., 2] == 17).all() and got[..., 0].min() == 0
  # 255 / (hi - lo) * hi - lo * 255 / (hi - lo) is 254.99998 in float32 here: the top is 254
  assert got[..., 0].max() == 254


def _blend(a, b, factor):
  """big_vision's blend of two uint8 values, in float32 scalars."""
  if factor in (0.0, 1.0):
    return b if factor else a
  value = F32(F32(a) + F32(F32(factor) * F32(F32(b) - F32(a))))
  return int(min(max(value, 0), 255)) if not 0 < factor < 1 else int(value)


def _gray(rgb):
  """tf.image.rgb_to_grayscale of one pixel, in float32 scalars."""
  r, g, b = (F32(F32(v) * F32(1 / 255)) for v in rgb)
  dot = F32(F32(F32(r * F32(0.2989)) + F32(g * F32(0.5870))) + F32(b * F32(0.1140)))
  return int(F32(dot * F32(255.5)))


@pytest.mark.parametrize('magnitude', [0, 3, 10, 20])
def test_enhance_ops_blend_in_float32_and_truncate(image, magnitude):
  factor = magnitude / 10 * 1.8 + 0.1
  h, w = image.shape[:2]
  got = {op: ra.apply_op(image, op, magnitude) for op in ('Color', 'Contrast', 'Brightness',
                                                           'Sharpness')}
  smooth = [[1, 1, 1], [1, 5, 1], [1, 1, 1]]
  for y in range(h):
    for x in range(w):
      for c in range(3):
        v = image[y, x, c]
        assert got['Color'][y, x, c] == _blend(_gray(image[y, x]), v, factor)
        # Contrast's degenerate is (h * w) / 256, not the image's mean
        assert got['Contrast'][y, x, c] == _blend(h * w // 256, v, factor)
        assert got['Brightness'][y, x, c] == _blend(0, v, factor)
        blurred = v
        if 0 < y < h - 1 and 0 < x < w - 1:
          acc = F32(0)
          for i in range(3):
            for j in range(3):
              acc = F32(acc + F32(F32(image[y + i - 1, x + j - 1, c]) * F32(F32(smooth[i][j]) /
                                                                            F32(13))))
          blurred = int(min(max(acc, 0), 255))
        assert got['Sharpness'][y, x, c] == _blend(blurred, v, factor)


def test_sharpness_truncation_loses_a_level_on_flat_areas():
  flat = np.full((5, 5, 3), 3, np.uint8)
  # 3 smooths to 2.9999998 in float32, truncated to 2; factor 0.1 keeps 2.1 -> 2
  assert ra.apply_op(flat, 'Sharpness', 0)[2, 2, 0] == 2
  assert ra.apply_op(np.full((5, 5, 3), 4, np.uint8), 'Sharpness', 0)[2, 2, 0] == 4


def _round(v):
  return math.copysign(math.floor(abs(v) + 0.5), v)


def _transformed(img, t):
  """Output (x, y) reads input (t0 x + t1 y + t2, t3 x + t4 y + t5) in float32,
  rounded half away from zero; 128 outside."""
  h, w = img.shape[:2]
  t = [F32(v) for v in t]
  out = np.empty_like(img)
  for y in range(h):
    for x in range(w):
      sx = _round(F32(F32(F32(t[0] * F32(x)) + F32(t[1] * F32(y))) + t[2]))
      sy = _round(F32(F32(F32(t[3] * F32(x)) + F32(t[4] * F32(y))) + t[5]))
      inside = 0 <= sx < w and 0 <= sy < h
      out[y, x] = img[int(sy), int(sx)] if inside else 128
  return out


@pytest.mark.parametrize('magnitude', [1, 10, 17])
def test_geometric_ops_are_tfa_transforms_with_gray_fill(image, magnitude):
  h, w = image.shape[:2]
  for negate in (False, True):
    sign = -1 if negate else 1
    shear = F32(sign * magnitude / 10 * 0.3)
    pixels = F32(sign * magnitude / 10 * 100)
    want = {'ShearX': [1, shear, 0, 0, 1, 0], 'ShearY': [1, 0, 0, shear, 1, 0],
            'TranslateX': [1, 0, pixels, 0, 1, 0], 'TranslateY': [1, 0, 0, 0, 1, pixels]}
    radians = F32(F32(sign * magnitude / 10 * 30) * F32(math.pi / 180))
    cos, sin = F32(math.cos(radians)), F32(math.sin(radians))
    # about the centre ((w-1)/2, (h-1)/2), counterclockwise for a positive angle
    x_off = F32(F32(F32(w - 1) - F32(F32(cos * F32(w - 1)) - F32(sin * F32(h - 1)))) / F32(2))
    y_off = F32(F32(F32(h - 1) - F32(F32(sin * F32(w - 1)) + F32(cos * F32(h - 1)))) / F32(2))
    want['Rotate'] = [cos, -sin, x_off, sin, cos, y_off]
    for op, t in want.items():
      assert np.array_equal(ra.apply_op(image, op, magnitude, negate), _transformed(image, t)), op


def test_cutout_grays_a_square_clipped_to_the_image(image):
  for center in ((6, 8), (0, 16), (12, 0)):
    got = ra.apply_op(image, 'Cutout', 1, center=center)  # half-side int(0.1 * 40) = 4
    rows, cols = np.mgrid[:13, :17]
    inside = ((rows >= center[0] - 4) & (rows < center[0] + 4) & (cols >= center[1] - 4)
              & (cols < center[1] + 4))
    assert np.array_equal(got, np.where(inside[..., None], 128, image))
  assert np.array_equal(ra.apply_op(image, 'Cutout', 0), image)  # a half-side of 0


def test_randaugment_applies_the_chosen_op_each_layer_with_its_sign_and_centre(image):
  policy = ra.RandAugment(2, 10)
  assert policy.draws == 2 * ra.DRAWS_PER_LAYER
  # layer 1: op 3 (Rotate) negated; layer 2: op 14 (Cutout) at row 0.5 * 13, column 0.25 * 17
  u = [3.5 / 16, 0.2, 0.9, 0.9, 14.2 / 16, 0.7, 0.5, 0.25]
  want = ra.apply_op(ra.apply_op(image, 'Rotate', 10, negate=True), 'Cutout', 10,
                     center=(6, 4))
  before = image.copy()
  assert np.array_equal(policy.apply(image, u), want)
  assert np.array_equal(image, before)  # the input is left as it was
  # every op is reachable, each on a sixteenth of the draws
  ops = [ra.OPS[int(v * 16)] for v in np.linspace(0, 1, 160, endpoint=False)]
  assert {op: ops.count(op) for op in ra.OPS} == {op: 10 for op in ra.OPS}


def test_bad_arguments_are_one_line_errors(image):
  with pytest.raises(ValueError, match=r"unknown RandAugment op 'Blur'; ops are: AutoContrast"):
    ra.apply_op(image, 'Blur', 5)
  with pytest.raises(ValueError, match='magnitude must be a finite number >= 0'):
    ra.apply_op(image, 'Rotate', -1)
  with pytest.raises(ValueError, match=r'expected a uint8 \(H, W, 3\) image'):
    ra.apply_op(image.astype(np.float32), 'Invert', 5)
  assert ra.parse_randaug((2, 10)) == (2, 10.0) and ra.parse_randaug(()) is None
  for bad in ((2,), (2, -1), (2.5, 10), ('2', 10), (2, float('nan')), 'randaug(2,10)'):
    with pytest.raises(ValueError, match=r'^randaug must be \(N, M\), N layers'):
      ra.parse_randaug(bad)
