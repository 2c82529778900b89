"""A TFDS imagenet2012 already prepared in array_record (by TFDS elsewhere, or by
`python -m data.imagenet.convert`), read with tfds.data_source: JPEG bytes, decoded by us."""
from __future__ import annotations


class TfdsSource:
  def __init__(self, name: str, split: str, data_dir: str):
    import os
    import tensorflow_datasets as tfds
    data_dir = os.path.expanduser(data_dir) if data_dir else None
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                     decoders={'image': tfds.decode.SkipDecoding()})
    except Exception as e:  # TFDS raises several types for unprepared data
      raise FileNotFoundError(
          f'TFDS {name!r} split {split!r} is not prepared in array_record format under '
          f'data_dir={data_dir!r} (config.data.path): {type(e).__name__}: '
          f'{str(e).splitlines()[0]}. Convert the tars or folders with `python -m '
          f'data.imagenet.convert --path=... --out={data_dir}`') from e
    self.name = name

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    record = self.source[int(i)]
    name = record.get('file_name', f'{self.name}[{i}]')
    return {'jpeg': record['image'], 'label': int(record['label']),
            'name': name.decode() if isinstance(name, bytes) else str(name)}
