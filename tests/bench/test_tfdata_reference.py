"""The tf.data reference input: big_vision's training ops, run where tensorflow is."""
import io
import json

import numpy as np
import pytest

from vit_jax.bench import tfdata_reference


@pytest.fixture(scope='module')
def photo_jpegs():
  """scikit-image's photos, square and wider than tall, as quality-90 JPEGs."""
  import skimage.data
  from PIL import Image
  jpegs = []
  for photo in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()):
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format='JPEG', quality=90)
    jpegs.append(buffer.getvalue())
  return jpegs


def test_batches_are_uint8_crops_of_the_photos(photo_jpegs):
  pytest.importorskip('tensorflow')
  batches = tfdata_reference.training_batches(photo_jpegs, image_size=32, batch_size=4)
  for batch in batches.take(2).as_numpy_iterator():
    assert batch.shape == (4, 32, 32, 3) and batch.dtype == np.uint8
    assert batch.std() > 10  # photo content, not a blank or constant image


def test_main_prints_the_rate_as_one_json_line(photo_jpegs, tmp_path, capsys):
  pytest.importorskip('tensorflow')
  for i, jpeg in enumerate(photo_jpegs):
    (tmp_path / f'{i}.jpg').write_bytes(jpeg)
  args = ['--images', str(tmp_path), '--image-size', '32', '--batch-size', '4',
          '--seconds', '0.2']
  assert tfdata_reference.main(args) == 0
  line, = capsys.readouterr().out.splitlines()
  result = json.loads(line)
  assert result['images_per_sec'] > 0
  assert result['threads'] == tfdata_reference.PRIVATE_THREADPOOL_SIZE
  (tmp_path / 'png.jpg').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(64))
  assert tfdata_reference.main(args) == 2
  err = capsys.readouterr().err
  assert 'not a JPEG tensorflow can read' in err and len(err.splitlines()) == 1


def test_availability_and_usage_need_no_tensorflow(tmp_path, capsys):
  assert isinstance(tfdata_reference.available(), bool)
  with pytest.raises(SystemExit) as exit_info:
    tfdata_reference.main(['--help'])
  assert exit_info.value.code == 0 and '--cores' in capsys.readouterr().out
  assert tfdata_reference.main(['--images', str(tmp_path)]) == 2
  assert 'no .jpg or .jpeg files' in capsys.readouterr().err
  assert tfdata_reference.main(['--images', str(tmp_path), '--cores', '0']) == 2
  assert '--cores 0' in capsys.readouterr().err
