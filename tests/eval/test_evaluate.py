"""The evaluation core against a direct computation, on real photos."""
import os

import numpy as np
import pytest

from vit_jax.models import registry
from vit_jax.data.eval_pipeline import eval_batches, num_batches
from vit_jax.data.preprocess import decode_rgb, eval_crop, normalize
from vit_jax.data.sources import open_source
from vit_jax.eval.evaluate import UnreadableImageError, evaluate
from eval_helpers import photo_folder, tfds_twin, tiny_checkpoint
from conftest import jit_apply


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('eval')
  root = photo_folder(str(tmp / 'photos'), corrupt=True)
  cfg, params = tiny_checkpoint(str(tmp / 'ckpt'))
  return root, cfg, params


def _reference(root, cfg, params):
  """Logits by hand: decode, crop, normalise, apply; the corrupt file left out."""
  src = open_source(f'folder:{root}')
  rows = [i for i in range(len(src)) if not src[i]['id'].endswith('broken.jpg')]
  x = np.stack([normalize(eval_crop(decode_rgb(src[i]['image']), cfg.image_size, cfg.crop_pct),
                          cfg.mean, cfg.std) for i in rows])
  logits = np.asarray(jit_apply(registry.module_from_config(cfg), {'params': params}, x))
  labels = np.array([src[i]['label'] for i in rows])
  return logits, labels, [src[i]['id'] for i in rows]


def _metrics(logits, labels):
  top5 = np.argsort(-logits, axis=1)[:, :5]
  logp = logits - logits.max(1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
  return ((top5[:, 0] == labels).mean(), (top5 == labels[:, None]).any(1).mean(),
          -logp[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize('batch_size', [1, 4, 5])
def test_metrics_equal_a_direct_computation_for_any_batch_size(setup, batch_size):
  root, cfg, params = setup
  logits, labels, ids = _reference(root, cfg, params)
  top1, top5, loss = _metrics(logits, labels)
  out = evaluate(registry.module_from_config(cfg), params, f'folder:{root}', model_config=cfg,
                 batch_size=batch_size, write_logits=True, progress=False, log=lambda m: None)
  assert out['num_examples'] == len(labels) == 13 and out['num_skipped'] == 1
  assert out['skipped'] == ['class_1/broken.jpg']
  assert out['top1'] == top1 and out['top5'] == top5
  assert out['loss'] == pytest.approx(loss, rel=1e-5)
  assert list(out['ids']) == ids
  np.testing.assert_array_equal(out['labels'], labels)
  np.testing.assert_allclose(out['logits'], logits, atol=1e-5)
  # the logits it returns give the metrics it reports
  assert _metrics(out['logits'], out['labels'])[:2] == (out['top1'], out['top5'])


def test_strict_mode_fails_on_the_unreadable_file(setup):
  root, cfg, params = setup
  with pytest.raises(UnreadableImageError, match='class_1/broken.jpg'):
    evaluate(registry.module_from_config(cfg), params, f'folder:{root}', model_config=cfg,
             batch_size=4, strict=True, progress=False)


@pytest.mark.parametrize('n, batch, hosts', [(13, 4, 1), (13, 2, 2), (13, 4, 3), (2, 4, 3)])
def test_shards_cover_every_example_once_with_equal_step_counts(setup, tmp_path, n, batch, hosts):
  root = photo_folder(str(tmp_path / 'p'), counts=(n,))
  src = open_source(f'folder:{root}')
  seen, steps = [], set()
  for p in range(hosts):
    batches = list(eval_batches(src, local_batch=batch, image_size=16, crop_pct=1.0,
                                process_index=p, process_count=hosts, workers=2))
    steps.add(len(batches))
    for b in batches:
      assert b['image'].shape == (batch, 16, 16, 3) and b['image'].dtype == np.uint8
      seen += [int(i) for i in b['index'][b['valid']]]
      assert (b['index'][~b['valid']] == -1).all()
  assert steps == {num_batches(n, batch, hosts)}
  assert sorted(seen) == list(range(n))


class _RealLabels:
  """A folder source with ImageNet-ReaL-style label sets (some empty)."""
  multi_label = True

  def __init__(self, folder, real):
    self.folder, self.real = folder, real
    self.class_names, self.num_classes = folder.class_names, folder.num_classes

  def __len__(self):
    return len(self.folder)

  def id_of(self, i):
    return self.folder.id_of(i)

  def __getitem__(self, i):
    return {**self.folder[i], 'real': self.real[i]}


def test_real_multi_label_protocol(setup, tmp_path):
  """A hit is a prediction among the real labels; images with none are left out."""
  _, cfg, params = setup
  folder = open_source('folder:' + photo_folder(str(tmp_path / 'p'), counts=(4, 4, 3)))
  rs = np.random.RandomState(0)
  real = [sorted(rs.choice(3, rs.randint(0, 3), replace=False).tolist()) for _ in range(11)]
  src = _RealLabels(folder, real)
  x = np.stack([normalize(eval_crop(decode_rgb(folder[i]['image']), 32, cfg.crop_pct),
                          cfg.mean, cfg.std) for i in range(11)])
  logits = np.asarray(jit_apply(registry.module_from_config(cfg), {'params': params}, x))
  kept = [i for i in range(11) if real[i]]
  top = np.argsort(-logits, axis=1)
  ref_top1 = np.mean([top[i, 0] in real[i] for i in kept])
  ref_top5 = np.mean([bool(set(top[i, :3]) & set(real[i])) for i in kept])  # 3 classes
  out = evaluate(registry.module_from_config(cfg), params, src, model_config=cfg,
                 batch_size=4, progress=False)
  assert out['num_examples'] == len(kept) < 11
  assert out['top1'] == pytest.approx(ref_top1) and out['top5'] == pytest.approx(ref_top5)
  assert 0 < len(kept) and ref_top5 == 1.0


def test_a_tfds_split_gives_the_folder_s_results(setup, tmp_path):
  """The same images through tfds.data_source: same logits per image, same metrics."""
  root, cfg, params = setup
  logits, labels, ids = _reference(root, cfg, params)
  name = tfds_twin(str(tmp_path / 'tfds'), root)
  out = evaluate(registry.module_from_config(cfg), params, f'tfds:{name}:validation',
                 model_config=cfg, batch_size=4, data_dir=str(tmp_path / 'tfds'),
                 write_logits=True, progress=False, log=lambda m: None)
  assert out['num_examples'] == 13 and out['num_skipped'] == 1
  assert (out['top1'], out['top5']) == _metrics(logits, labels)[:2]
  folder, tfds_src = open_source(f'folder:{root}'), open_source(f'tfds:{name}',
                                                                data_dir=str(tmp_path / 'tfds'))
  folder_id = {folder[i]['image']: folder[i]['id'] for i in range(len(folder))}
  assert out['skipped'] == [tfds_src.id_of(i) for i in range(len(tfds_src))
                            if folder_id[tfds_src[i]['image']] == 'class_1/broken.jpg']
  indices = [int(i.rsplit('/', 1)[1]) for i in out['ids']]
  assert indices == sorted(indices) and list(out['ids']) == [tfds_src.id_of(i) for i in indices]
  row = {ident: r for r, ident in enumerate(ids)}
  order = [row[folder_id[tfds_src[i]['image']]] for i in indices]
  np.testing.assert_allclose(out['logits'], logits[order], atol=1e-5)
  np.testing.assert_array_equal(out['labels'], labels[order])


def test_missing_and_truncated_files_are_skipped_by_name(setup, tmp_path):
  _, cfg, params = setup
  root = photo_folder(str(tmp_path / 'p'), counts=(3, 3))
  os.symlink(str(tmp_path / 'nowhere.png'), str(tmp_path / 'p' / 'class_0' / 'gone.png'))
  with open(os.path.join(root, 'class_1', '1.jpg'), 'rb') as f:
    head = f.read(600)
  with open(os.path.join(root, 'class_1', 'cut.jpg'), 'wb') as f:
    f.write(head)  # a JPEG cut off after its headers
  logged = []
  out = evaluate(registry.module_from_config(cfg), params, f'folder:{root}', model_config=cfg,
                 batch_size=4, progress=False, log=logged.append)
  assert out['num_examples'] == 6 and out['num_skipped'] == 2
  assert out['skipped'] == ['class_0/gone.png', 'class_1/cut.jpg']
  assert len(logged) == 2 and 'class_0/gone.png' in logged[0] and 'FileNotFoundError' in logged[0]
  assert 'class_1/cut.jpg' in logged[1]


def test_real_accuracy_on_a_hand_made_batch():
  """ImageNet ReaL by hand: six images, six classes, top-5 of six leaves out
  only each image's lowest class."""
  import jax
  from vit_jax.eval.evaluate import _sums
  sums = jax.jit(_sums)  # one compile, not one per operation
  logits = np.array([
      [0, 1, 9, 2, 3, 4],   # top-1 2, real {2}: a hit
      [9, 1, 2, 8, 3, 0],   # top-1 0, real {3, 5}: top-1 misses, top-5 has 3
      [9, 1, 2, 8, 3, 4],   # real {}: left out
      [0, 5, 1, 2, 9, 3],   # top-1 4, real {1, 4}: a hit
      [0, 9, 1, 2, 3, 4],   # top-1 1, real {0}, the lowest: misses both
      [0, 9, 1, 2, 3, 4],   # padding (not valid), real {1}: left out
  ], np.float32)
  real = np.zeros((6, 6), bool)
  for row, labels in enumerate([[2], [3, 5], [], [1, 4], [0], [1]]):
    real[row, labels] = True
  labels = np.array([2, 3, 0, 1, 0, 1], np.int32)  # the original labels: only the loss uses them
  valid = np.array([True] * 5 + [False])
  out = {k: float(v) for k, v in sums(logits, labels, valid, real).items()}
  logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  kept = [0, 1, 3, 4]
  assert (out['count'], out['top1'], out['top5']) == (4.0, 2.0, 3.0)
  assert out['loss'] == pytest.approx(-sum(logp[i, labels[i]] for i in kept), rel=1e-6)
  plain = {k: float(v) for k, v in sums(logits, labels, valid).items()}
  assert (plain['count'], plain['top1'], plain['top5']) == (5.0, 2.0, 4.0)  # single labels
