"""The 'text' data source: the user's file, folder or zip, split exactly, evaluated exactly."""
import zipfile

import numpy as np
import pytest

from configs.common import override
from data.text_files import read_text
from tasks import text_lm
from tests.helpers import tiny_config, tiny_text


def text_config(**data):
  c = tiny_config('unused')
  return override(c, {'data.name': 'text', **{f'data.{k}': v for k, v in data.items()}})


def test_fractions_split_consecutive_ranges_exactly(tmp_path):
  raw = tiny_text(10_000)
  (tmp_path / 'a.txt').write_bytes(raw)
  task = text_lm.Task(text_config(path=str(tmp_path / 'a.txt'), fractions=(0.8, 0.15, 0.05)))
  parts = {s: task.split(s) for s in ('train', 'valid', 'test')}
  assert [len(parts[s]) for s in ('train', 'valid', 'test')] == [8000, 1500, 500]
  assert b''.join(parts[s].tobytes() for s in ('train', 'valid', 'test')) == raw


@pytest.mark.parametrize('split', ['valid', 'test'])
def test_eval_predicts_every_byte_after_the_first_once(tmp_path, split):
  raw = tiny_text(7_777)
  (tmp_path / 'a.txt').write_bytes(raw)
  task = text_lm.Task(text_config(path=str(tmp_path / 'a.txt'), fractions=(0.5, 0.3, 0.2)))
  data = task.split(split)
  seen = []
  for b in task.eval_batches(split):
    for tokens, mask in zip(b['tokens'], b['mask']):
      seen += list(tokens[1:][mask > 0])  # the targets counted
  assert len(seen) == len(data) - 1
  np.testing.assert_array_equal(seen, data[1:])


def test_folder_zip_and_separate_split_files(tmp_path):
  (tmp_path / 'd').mkdir()
  (tmp_path / 'd' / 'b.txt').write_bytes(b'B' * 300)
  (tmp_path / 'd' / 'a.txt').write_bytes(b'A' * 300)
  with zipfile.ZipFile(tmp_path / 'z.zip', 'w') as zf:
    zf.writestr('x/2.txt', b'2' * 200)
    zf.writestr('x/1.txt', b'1' * 200)
  (tmp_path / 'f.txt').write_bytes(b'F' * 100)
  out = read_text(split_paths={'train': str(tmp_path / 'd'), 'valid': str(tmp_path / 'z.zip'),
                               'test': str(tmp_path / 'f.txt')})
  assert out['train'].tobytes() == b'A' * 300 + b'\0' + b'B' * 300  # sorted, NUL-joined
  assert out['valid'].tobytes() == b'1' * 200 + b'\0' + b'2' * 200
  assert out['test'].tobytes() == b'F' * 100


def test_short_or_missing_splits_name_the_file(tmp_path):
  (tmp_path / 'small.txt').write_bytes(tiny_text(1000))
  with pytest.raises(ValueError, match=r"test split of '.*small.txt' has 10 bytes, fewer than"):
    read_text(str(tmp_path / 'small.txt'), (0.9, 0.09, 0.01), min_bytes=33)
  (tmp_path / 'empty.txt').write_bytes(b'')
  with pytest.raises(ValueError, match=r"valid split of '.*empty.txt' has 0 bytes"):
    read_text(split_paths={'train': str(tmp_path / 'small.txt'),
                           'valid': str(tmp_path / 'empty.txt'),
                           'test': str(tmp_path / 'small.txt')})
  with pytest.raises(FileNotFoundError, match=r"nope.txt.*--config.data.path"):
    read_text(str(tmp_path / 'nope.txt'))
