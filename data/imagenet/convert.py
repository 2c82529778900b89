"""Converts the official tars or the folder layout to a TFDS imagenet2012 in array_record
(JPEG bytes, label, file name), without TensorFlow; read back with tfds.data_source.

  python -m data.imagenet.convert --format=tar --path=/data/ilsvrc --out=/data/tfds
  python -m data.imagenet.convert --format=folder --path=/data/imagenet --out=/data/tfds

Writes <out>/imagenet2012/5.1.0/ (the version TFDS's own builder writes). Each shard is
written to a temporary file and renamed when complete, so an interrupted conversion resumes
where it stopped when run again. The odd images (CMYK JPEGs, PNGs named .JPEG) are re-encoded
as RGB JPEG as TFDS's builder does; unreadable files are listed and left out.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import sys
import time

from PIL import Image

NAME, VERSION = 'imagenet2012', '5.1.0'
TEMPLATE = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}'


def features(classes):
  import tensorflow_datasets as tfds
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(encoding_format='jpeg'),
      'label': tfds.features.ClassLabel(names=list(classes)),
      'file_name': tfds.features.Text()})


def clean_jpeg(data: bytes) -> bytes:
  """The bytes as they are for an RGB or greyscale JPEG, else re-encoded as an RGB JPEG."""
  im = Image.open(io.BytesIO(data))
  if im.format == 'JPEG' and im.mode in ('RGB', 'L'):
    im.draft(im.mode, (1, 1))  # a cheap 1/8-scale decode finds truncated files
    im.load()
    return data
  out = io.BytesIO()
  im.convert('RGB').save(out, 'JPEG', quality=95)
  return out.getvalue()


def member_name(name: str) -> str:
  """'n01440764_10026.JPEG' from a file path or a '<tar>:<member>' record name."""
  return os.path.basename(name.rsplit(':', 1)[-1])


def shard_path(folder: str, split: str, k: int, shards: int) -> str:
  return os.path.join(folder, f'{NAME}-{split}.array_record-{k:05d}-of-{shards:05d}')


def write_shard(source, split: str, k: int, shards: int, folder: str) -> tuple[int, list]:
  """Writes shard k of the split (a contiguous slice); returns (records, unreadable names)."""
  from array_record.python.array_record_module import ArrayRecordWriter
  feats = features(source.classes)
  n = len(source)
  path = shard_path(folder, split, k, shards)
  tmp = f'{path}.tmp{os.getpid()}'
  writer = ArrayRecordWriter(tmp, 'group_size:1')
  count, bad = 0, []
  for i in range(k * n // shards, (k + 1) * n // shards):
    record = source[i]
    try:
      jpeg = clean_jpeg(record['jpeg'])
    except Exception as e:  # PIL raises several types for bad files
      bad.append(f'{record["name"]} ({type(e).__name__}: {e})')
      continue
    writer.write(feats.serialize_example({'image': io.BytesIO(jpeg), 'label': record['label'],
                                          'file_name': member_name(record['name'])}))
    count += 1
  writer.close()
  os.replace(tmp, path)
  return count, bad


def records_in(path: str) -> int:
  from array_record.python.array_record_module import ArrayRecordReader
  reader = ArrayRecordReader(path)
  try:
    return reader.num_records()
  finally:
    reader.close()


def convert_split(source, split: str, folder: str, shards: int, workers: int, log=print):
  """Writes the missing shards of one split; returns the SplitInfo over all of them."""
  import tensorflow_datasets as tfds
  todo = [k for k in range(shards) if not os.path.exists(shard_path(folder, split, k, shards))]
  if len(todo) < shards:
    log(f'{split}: {shards - len(todo)} of {shards} shards already written, resuming')
  t0, done = time.time(), 0
  pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
  try:
    run = pool.submit if pool else (lambda f, *a: _Done(f(*a)))
    futures = [run(write_shard, source, split, k, shards, folder) for k in todo]
    for future in (concurrent.futures.as_completed(futures) if pool else futures):
      count, bad = future.result()
      done += 1
      for b in bad:
        log(f'  left out an unreadable image: {b}')
      rate = done / (time.time() - t0)
      log(f'{split}: shard {shards - len(todo) + done}/{shards} ({count} images), '
          f'{time.time() - t0:.0f} s, ETA {(len(todo) - done) / rate:.0f} s')
  finally:
    if pool:
      pool.shutdown()
  lengths = [records_in(shard_path(folder, split, k, shards)) for k in range(shards)]
  size = sum(os.path.getsize(shard_path(folder, split, k, shards)) for k in range(shards))
  template = tfds.core.ShardedFileTemplate(data_dir=folder, template=TEMPLATE, dataset_name=NAME,
                                           split=split, filetype_suffix='array_record')
  return tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=size,
                             filename_template=template)


class _Done:
  def __init__(self, value):
    self.value = value

  def result(self):
    return self.value


def convert(fmt: str, path: str, out: str, *, splits=('train', 'validation'),
            shards=None, workers: int = 1, num_classes: int = 1000, val_labels: str = '',
            log=print) -> str:
  """Converts the splits; returns the version folder (tfds.data_source data_dir is `out`)."""
  import tensorflow_datasets as tfds
  from ml_collections import ConfigDict
  from data.imagenet.sources import open_split
  data = ConfigDict(dict(format=fmt, path=path, num_classes=num_classes, val_labels=val_labels,
                         tfds_name=NAME))
  folder = os.path.join(os.path.expanduser(out), NAME, VERSION)
  os.makedirs(folder, exist_ok=True)
  infos, classes = [], None
  for split in splits:
    source = open_split(data, split)
    classes = classes or source.classes
    n_shards = (shards or {}).get(split) or max(1, len(source) // 1250)
    infos.append(convert_split(source, split, folder, n_shards, workers, log))
  tfds.folder_dataset.write_metadata(data_dir=folder, features=features(classes),
                                     split_infos=infos, version=VERSION, check_data=False)
  log(f'done: tfds.data_source({NAME!r}, data_dir={out!r}) reads '
      + ', '.join(f'{i.name} ({i.num_examples} images)' for i in infos))
  return folder


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--format', choices=('tar', 'folder'), required=True)
  p.add_argument('--path', required=True, help='the folder with the tars, or with train/ val/')
  p.add_argument('--out', required=True, help='the TFDS data_dir to write')
  p.add_argument('--val_labels', default='', help='tar format: validation labels file')
  p.add_argument('--splits', default='train,validation')
  p.add_argument('--train_shards', type=int, default=1024)
  p.add_argument('--validation_shards', type=int, default=64)
  p.add_argument('--workers', type=int, default=os.cpu_count())
  p.add_argument('--num_classes', type=int, default=1000)
  a = p.parse_args(argv)
  try:
    convert(a.format, a.path, a.out, splits=a.splits.split(','), workers=a.workers,
            shards={'train': a.train_shards, 'validation': a.validation_shards},
            num_classes=a.num_classes, val_labels=a.val_labels)
  except (ValueError, FileNotFoundError) as e:
    print(f'ERROR: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
