"""The official tars read in place, the converter's round trip through tfds.data_source
(resumable), and the TFDS path under tfds.testing.mock_data."""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from data.imagenet import convert
from data.imagenet.folder import FolderSource
from data.imagenet.tars import TarSource
from data.imagenet.tfds_source import TfdsSource
from tests.test_imagenet_data import CLASSES, tree_files, write_tree


def add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_tars(root, files):
  """ILSVRC2012_img_train.tar of per-class tars, the flat val tar and its labels file."""
  with tarfile.open(os.path.join(root, 'ILSVRC2012_img_train.tar'), 'w') as outer:
    for wnid in CLASSES:
      buf = io.BytesIO()
      with tarfile.open(fileobj=buf, mode='w') as inner:
        for (split, w, name), data in sorted(files.items()):
          if split == 'train' and w == wnid:
            add(inner, name, data)
      add(outer, f'{wnid}.tar', buf.getvalue())
  val = sorted((k, v) for k, v in files.items() if k[0] == 'val')
  with tarfile.open(os.path.join(root, 'ILSVRC2012_img_val.tar'), 'w') as tar:
    for i, ((_, wnid, _), data) in enumerate(val):
      add(tar, f'ILSVRC2012_val_{i + 1:08d}.JPEG', data)
  with open(os.path.join(root, 'validation_labels.txt'), 'w') as f:
    f.write(''.join(f'{wnid}\n' for (_, wnid, _), _ in val))
  return str(root)


@pytest.fixture(scope='module')
def dirs(tmp_path_factory):
  files = tree_files(per_class=6)
  return (write_tree(tmp_path_factory.mktemp('folder')),
          write_tars(tmp_path_factory.mktemp('tars'), files))


def test_tar_reader_gives_the_folder_readers_records(dirs):
  folder, tars = dirs
  for split in ('train', 'validation'):
    a, b = FolderSource(folder, split, 3), TarSource(tars, split, 3)
    assert len(a) == len(b) and a.classes == b.classes == list(CLASSES)
    for i in range(len(a)):
      assert a[i]['jpeg'] == b[i]['jpeg'] and a[i]['label'] == b[i]['label']
  cached = [f for f in os.listdir(tars) if f.endswith('.index.npz')]
  assert len(cached) == 2  # indexed once, then read from the cache
  assert TarSource(tars, 'train', 3)[5]['jpeg'] == FolderSource(folder, 'train', 3)[5]['jpeg']


def test_tar_reader_errors_name_the_file_and_fix(dirs, tmp_path):
  _, tars = dirs
  with pytest.raises(FileNotFoundError, match='ILSVRC2012_img_train.tar not found'):
    TarSource(str(tmp_path), 'train', 3)
  with pytest.raises(FileNotFoundError, match='validation labels .* not found'):
    TarSource(tars, 'validation', 3, val_labels=str(tmp_path / 'none.txt'))
  short = tmp_path / 'short.txt'
  short.write_text('n01440764\n')
  with pytest.raises(ValueError, match='has 1 labels but .* holds 6 images'):
    TarSource(tars, 'validation', 3, val_labels=str(short))


def test_converter_round_trip_through_tfds_data_source_and_resume(dirs, tmp_path):
  folder, tars = dirs
  out, lines = str(tmp_path / 'tfds'), []
  shards = {'train': 3, 'validation': 2}
  convert.convert('tar', tars, out, shards=shards, num_classes=3, log=lines.append)
  assert any('shard 3/3' in line for line in lines)
  for split in ('train', 'validation'):
    ours, theirs = TfdsSource('imagenet2012', split, out), FolderSource(folder, split, 3)
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
      a, b = ours[i], theirs[i]
      assert a['label'] == b['label']
      if split == 'train':
        assert a['name'] == os.path.basename(b['name'])
      odd = split == 'train' and i in (0, 6)  # the CMYK JPEG and the PNG named .JPEG
      assert (a['jpeg'] != b['jpeg']) == odd  # only those re-encoded, the rest byte for byte
      if odd:
        im = Image.open(io.BytesIO(a['jpeg']))
        assert (im.format, im.mode) == ('JPEG', 'RGB')
  # Interrupted: one shard missing and a partial temporary file; a rerun writes only it.
  version = os.path.join(out, 'imagenet2012', '5.1.0')
  kept = convert.shard_path(version, 'train', 0, 3)
  mtime = os.path.getmtime(kept)
  os.remove(convert.shard_path(version, 'train', 1, 3))
  open(convert.shard_path(version, 'train', 1, 3) + '.tmp999', 'w').close()
  lines.clear()
  convert.convert('folder', folder, out, shards=shards, num_classes=3, log=lines.append)
  assert any('2 of 3 shards already written' in line for line in lines)
  assert os.path.getmtime(kept) == mtime
  assert len(TfdsSource('imagenet2012', 'train', out)) == 18


def test_tfds_source_errors_and_mock_data(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.features import image_feature
  with pytest.raises(FileNotFoundError, match='not prepared .* data.imagenet.convert'):
    TfdsSource('imagenet2012', 'validation', str(tmp_path))

  def pil_jpeg(self, array):  # the mock encodes its random images with TF; PIL here
    out = io.BytesIO()
    Image.fromarray(np.asarray(array).squeeze()).save(out, 'JPEG')
    return out.getvalue()
  monkeypatch.setattr(image_feature._ImageEncoder, '_encode_image', pil_jpeg)
  with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
    src = TfdsSource('imagenet2012', 'validation', '')
    assert len(src) == 4
    record = src[0]
    assert Image.open(io.BytesIO(record['jpeg'])).format == 'JPEG'
    assert 0 <= record['label'] < 1000
