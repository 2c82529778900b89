"""ImageNet readers and the input pipeline on tiny trees of JPEGs written here, including the
odd files ImageNet has (a CMYK JPEG, a PNG named .JPEG, greyscale)."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from data.imagenet import pipeline
from data.imagenet.decode import UnreadableImage, center_box, crop_resize
from data.imagenet.folder import FolderSource

CLASSES = ('n01440764', 'n01443537', 'n01484850')
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])


def jpeg_bytes(label: int, i: int, mode: str = 'RGB', fmt: str = 'JPEG') -> bytes:
  """A class-coloured image of ImageNet-like aspect with per-image noise."""
  rng = np.random.default_rng((label, i))
  h, w = int(rng.integers(30, 50)), int(rng.integers(40, 64))
  pixels = np.clip(COLOURS[label] + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).convert(mode).save(buf, fmt)
  return buf.getvalue()


def tree_files(per_class: int):
  """{(split, wnid, file name): bytes} with one CMYK, one PNG-disguised and one grey train file."""
  files = {}
  for split, n in (('train', per_class), ('val', 2)):
    for label, wnid in enumerate(CLASSES):
      for i in range(n):
        odd = {0: ('CMYK', 'JPEG'), 1: ('RGB', 'PNG'), 2: ('L', 'JPEG')}.get(label)
        mode, fmt = odd if (split == 'train' and i == 0) else ('RGB', 'JPEG')
        files[split, wnid, f'{wnid}_{i}.JPEG'] = jpeg_bytes(label, i + 100 * (split == 'val'),
                                                             mode, fmt)
  return files


def write_tree(root, per_class: int = 6) -> str:
  for (split, wnid, name), data in tree_files(per_class).items():
    os.makedirs(os.path.join(root, split, wnid), exist_ok=True)
    with open(os.path.join(root, split, wnid, name), 'wb') as f:
      f.write(data)
  return str(root)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  return write_tree(tmp_path_factory.mktemp('imagenet'))


def test_folder_reader_labels_and_odd_files(tree):
  src = FolderSource(tree, 'train', 3)
  assert len(src) == 18 and src.classes == list(CLASSES)
  assert [src[i]['label'] for i in range(len(src))] == [0] * 6 + [1] * 6 + [2] * 6
  for i in (0, 6, 12):  # CMYK, PNG as .JPEG, greyscale: all decode to RGB
    record = src[i]
    w, h = Image.open(io.BytesIO(record['jpeg'])).size
    image = crop_resize(record['jpeg'], center_box((w, h), 1.0), (16, 16), record['name'])
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    if record['label'] == 2:  # greyscale: three equal channels
      assert (image == image[..., :1]).all()
    else:  # CMYK and PNG: the class colour survives (its channel is the brightest)
      assert np.argmax(image.reshape(-1, 3).mean(0)) == record['label']
  assert len(FolderSource(tree, 'validation', 3)) == 6


def test_folder_reader_errors_name_the_path_and_fix(tree, tmp_path):
  with pytest.raises(ValueError, match=r'3 class folders, expected 1000.*num_classes'):
    FolderSource(tree, 'train', 1000)
  with pytest.raises(FileNotFoundError, match='does not exist'):
    FolderSource(str(tmp_path / 'nowhere'), 'train', 3)
  os.makedirs(tmp_path / 'train' / 'a')
  with pytest.raises(FileNotFoundError, match=r'no val or validation/ folder'):
    FolderSource(str(tmp_path), 'validation', 1)


def test_reduced_size_decode_matches_full_decode():
  data = jpeg_bytes(0, 1)
  w, h = Image.open(io.BytesIO(data)).size
  box = (0, 0, w, h)
  reduced = crop_resize(data, box, (8, 8)).astype(float)
  full = np.asarray(Image.open(io.BytesIO(data)).convert('RGB').resize(
      (8, 8), Image.Resampling.BICUBIC)).astype(float)
  assert np.abs(reduced - full).mean() < 6  # draft decoding: same picture, small differences
  with pytest.raises(UnreadableImage, match='broken.JPEG'):
    crop_resize(data[: len(data) // 3], box, (8, 8), 'broken.JPEG')


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_train_batches_resume_and_repeat(tree):
  src = FolderSource(tree, 'train', 3)
  kw = dict(size=16, randaugment_spec='rand-m9-mstd0.5-inc1', repeats=3, threads=2)
  it = pipeline.train_dataset(src, 6, 0, **kw)
  first = _take(it, 2)
  state = it.get_state()
  rest = _take(it, 2)
  assert first[0]['image'].shape == (6, 16, 16, 3) and first[0]['image'].dtype == np.uint8
  again = pipeline.train_dataset(src, 6, 0, **kw)
  again.set_state(state)
  for a, b in zip(rest, _take(again, 2)):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  # Repeated augmentation: each image 3 times in a row, differently augmented.
  labels = np.concatenate([b['label'] for b in first])
  assert all(len(set(labels[i:i + 3])) == 1 for i in range(0, 12, 3))
  assert not np.array_equal(first[0]['image'][0], first[0]['image'][1])


def test_repeated_positions_cover_a_third_of_the_images_each_epoch():
  positions = pipeline._RepeatedPositions(30, seed=1, repeats=3)
  epoch = [positions(p) for p in range(30)]
  assert len(set(epoch)) == 10 and all(epoch.count(i) == 3 for i in set(epoch))
  assert [positions(p) for p in range(30, 60)] != epoch  # a new permutation per epoch


def test_corrupt_training_image_is_skipped_and_counted(tree, tmp_path):
  root = write_tree(tmp_path, per_class=2)
  bad = os.path.join(root, 'train', CLASSES[1], f'{CLASSES[1]}_1.JPEG')
  with open(bad, 'wb') as f:
    f.write(b'\xff\xd8 not a jpeg')
  src = FolderSource(root, 'train', 3)
  batches = _take(pipeline.train_dataset(src, 6, 0, size=16, threads=1), 3)
  assert sum(int(b['skipped'].sum()) for b in batches) >= 1
  val = FolderSource(root, 'validation', 3)
  os.replace(bad, os.path.join(root, 'val', CLASSES[1], f'{CLASSES[1]}_0.JPEG'))
  with pytest.raises(UnreadableImage, match=f'{CLASSES[1]}_0.JPEG.*replace or remove'):
    list(pipeline.eval_batches(val, 4, size=16, crop_pct=0.875, threads=1))


def test_eval_batches_cover_the_split_once_with_a_masked_tail(tree):
  val = FolderSource(tree, 'validation', 3)
  batches = list(pipeline.eval_batches(val, 4, size=16, crop_pct=0.875, threads=1))
  assert len(batches) == 2
  mask = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(mask, [1] * 6 + [0] * 2)
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches])[:6],
                                [0, 0, 1, 1, 2, 2])
  assert batches[0]['image'].shape == (4, 16, 16, 3)
