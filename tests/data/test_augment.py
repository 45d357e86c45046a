"""The training augmentation: Inception crop boxes with the torchvision /
Inception distribution, images close to PIL's antialiased resize of the
same window, flips where the draws say."""
import io
import math

import numpy as np
import pytest
from PIL import Image

from vit_jax.data.augment import TRIES, augment_into, inception_crop_box, reduction
from vit_jax.data.preprocess import decode_rgb
from vit_jax.data.train_pipeline import row_draws


def _reference_boxes(rng, n, width, height, scale, ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop.get_params, written out with its own generator."""
  out = []
  for _ in range(n):
    for _ in range(TRIES):
      target = width * height * rng.uniform(*scale)
      aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
      w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
      if 0 < w <= width and 0 < h <= height:
        top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        out.append((left, top, left + w, top + h))
        break
    else:
      out.append(None)
  return out


def _stats(boxes, width, height):
  b = np.array(boxes, np.float64)
  w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
  area = w * h / (width * height)
  free_x, free_y = width - w, height - h
  # where the box sits in its free range, for boxes that have one
  x = b[free_x > 0, 0] / free_x[free_x > 0]
  y = b[free_y > 0, 1] / free_y[free_y > 0]
  return dict(area_mean=area.mean(), area_q10=np.quantile(area, 0.1),
              area_q90=np.quantile(area, 0.9), log_ratio_mean=np.log(w / h).mean(),
              log_ratio_std=np.log(w / h).std(), x_mean=x.mean(), y_mean=y.mean(),
              x_q25=np.quantile(x, 0.25), y_q75=np.quantile(y, 0.75))


@pytest.mark.parametrize('size,scale', [((500, 375), (0.08, 1.0)), ((375, 500), (0.08, 1.0)),
                                        ((640, 480), (0.35, 1.0))])
def test_crop_boxes_follow_the_inception_distribution(size, scale):
  n = 20000
  draws = row_draws(7, 3, 0, n).tolist()
  ours = [inception_crop_box(u, *size, scale) for u in draws]
  for left, top, right, bottom in ours:
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
    assert (right - left) * (bottom - top) >= 0.95 * scale[0] * size[0] * size[1]
  reference = [b for b in _reference_boxes(np.random.default_rng(0), n, *size, scale) if b]
  got, want = _stats(ours, *size), _stats(reference, *size)
  for key in want:
    assert abs(got[key] - want[key]) < 0.015, (key, got[key], want[key])


def test_without_a_fitting_box_the_crop_is_the_largest_central_one():
  u = [0.999] * 30  # every try asks for a box wider than the image
  assert inception_crop_box(u, 400, 10, (0.99, 1.0)) == (193, 0, 206, 10)
  assert inception_crop_box(u, 100, 100, (1.0, 1.0)) == (0, 0, 100, 100)


def test_reduction_keeps_the_window_at_least_the_output_size():
  assert reduction((0, 0, 447, 500), 224) == 1
  assert reduction((0, 0, 448, 448), 224) == 2
  assert reduction((10, 10, 1900, 2000), 224) == 8
  assert reduction((0, 0, 5000, 5000), 32) == 8  # libjpeg shrinks by 1/8 at most


@pytest.fixture(scope='module')
def photos():
  import skimage.data
  out = []
  for photo in (skimage.data.coffee(), skimage.data.astronaut(), skimage.data.chelsea(),
                skimage.data.rocket()):
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, 'JPEG', quality=95)
    out.append(buf.getvalue())
  return out


def test_each_image_is_close_to_pils_antialiased_resize_of_the_same_window(photos):
  """Bilinear, shrinking by less than 2x after the power-of-two reduction, has
  the aliasing of a factor below two: measured on these photos, at most 5.2
  levels of 255 mean absolute difference and at least 27.9 dB PSNR per image
  against PIL's antialiased bilinear, about 1 level on average."""
  size, mads = 224, []
  for data in photos:
    pil = decode_rgb(data)
    for u in row_draws(0, 0, 0, 25).tolist():
      out = np.empty((size, size, 3), np.uint8)
      augment_into(out, data, u, scale=(0.08, 1.0), flip=False, interpolation='bilinear')
      box = inception_crop_box(u, pil.width, pil.height, (0.08, 1.0))
      want = np.asarray(pil.resize((size, size), Image.BILINEAR, box=box), np.float64)
      err = np.abs(out - want)
      mads.append(err.mean())
      assert err.mean() < 6.5, box
      assert 10 * np.log10(255 ** 2 / (err ** 2).mean()) > 26, box
  assert np.mean(mads) < 1.5


def test_the_flip_mirrors_the_same_crop_where_the_draw_is_below_one_half(photos):
  draws = row_draws(1, 2, 0, 16)
  flipped = 0
  for u in draws.tolist():
    plain, maybe = (np.empty((32, 32, 3), np.uint8) for _ in range(2))
    augment_into(plain, photos[0], u, scale=(0.08, 1.0), flip=False, interpolation='bicubic')
    augment_into(maybe, photos[0], u, scale=(0.08, 1.0), flip=True, interpolation='bicubic')
    want = plain[:, ::-1] if u[2 * TRIES + 2] < 0.5 else plain
    np.testing.assert_array_equal(maybe, want)
    flipped += u[2 * TRIES + 2] < 0.5
  assert 0 < flipped < 16
