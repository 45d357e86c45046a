"""Every image the eval decoder (PIL) reads decodes for training too, with
PIL's pixels; bytes nothing reads raise UndecodableImage."""
import io

import numpy as np
import pytest
from PIL import Image

from vit_jax.data import jpeg_region
from vit_jax.data.decode import Encoded, UndecodableImage
from vit_jax.data.preprocess import decode_rgb


@pytest.fixture(scope='module')
def photo():
  import skimage.data
  return Image.fromarray(skimage.data.coffee()[:237, :355])


def _encode(img, fmt='JPEG', **kw):
  buf = io.BytesIO()
  img.save(buf, fmt, **kw)
  return buf.getvalue()


def _kinds(photo):
  return {
      'baseline 4:2:0': _encode(photo, quality=90),
      'baseline 4:4:4': _encode(photo, quality=95, subsampling=0),
      'progressive': _encode(photo, quality=85, progressive=True),
      'grayscale': _encode(photo.convert('L')),
      'CMYK': _encode(photo.convert('CMYK')),
      'palette PNG': _encode(photo.convert('P'), 'PNG'),
      'RGBA PNG': _encode(photo.convert('RGBA'), 'PNG'),
      'BMP': _encode(photo, 'BMP'),
      'WebP': _encode(photo, 'WEBP'),
  }


def test_every_kind_decodes_as_pil_does(photo):
  for kind, data in _kinds(photo).items():
    image = Encoded(data)
    expected = np.asarray(decode_rgb(data))
    assert (image.width, image.height) == (355, 237), kind
    np.testing.assert_array_equal(image.decode(), expected, err_msg=kind)
    # a window alone (the region decoder for JPEGs) has the same pixels
    np.testing.assert_array_equal(image.window((33, 17, 301, 200)), expected[17:200, 33:301],
                                  err_msg=kind)


def test_the_region_decoder_is_used_for_jpegs_and_matches_a_full_decode(photo):
  assert jpeg_region.available()
  data = _encode(photo, quality=90)
  region = jpeg_region.decode_region(data, (8, 5, 100, 64))
  np.testing.assert_array_equal(region, np.asarray(decode_rgb(data))[5:64, 8:100])
  assert jpeg_region.decode_region(b'\xff\xd8\xff\xe0 not a jpeg', (0, 0, 4, 4)) is None


def test_power_of_two_reduction_rounds_up_like_libjpeg(photo):
  for kind, data in _kinds(photo).items():
    for k in (2, 4, 8):
      pixels = Encoded(data).decode(k)
      assert pixels.shape == (-(-237 // k), -(-355 // k), 3), (kind, k)
  # the DCT-domain reduction is a proper low-pass: close to a box average
  data = _encode(photo, quality=95)
  full = np.asarray(decode_rgb(data)).astype(np.float64)[:236, :354]
  box = full.reshape(118, 2, 177, 2, 3).mean(axis=(1, 3))
  assert np.abs(Encoded(data).decode(2)[:118, :177] - box).mean() < 3


def test_a_png_named_jpg_decodes_and_a_truncated_jpeg_is_refused(photo):
  png = _encode(photo, 'PNG')
  np.testing.assert_array_equal(Encoded(png).decode(), np.asarray(photo))
  jpeg = _encode(photo, quality=90)
  cut = Encoded(jpeg[:len(jpeg) * 3 // 4])
  # refused as PIL refuses it (unless told to load truncated images), whole
  # or a window that needs the missing rows
  with pytest.raises(UndecodableImage, match='truncated'):
    cut.decode()
  with pytest.raises(UndecodableImage, match='truncated'):
    cut.window((0, 100, 355, 237))


@pytest.mark.parametrize('data', [b'', b'not an image at all', b'\xff\xd8\xff\xe0 not a jpeg',
                                  b'\x89PNG\r\n\x1a\n garbage'])
def test_bytes_nothing_reads_raise_one_error(data):
  with pytest.raises(UndecodableImage):
    Encoded(data).decode()
