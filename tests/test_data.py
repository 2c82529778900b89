"""Data: the enwik8 zip reader and split, the LM windows, resumable iteration, full eval coverage."""
import zipfile

import numpy as np
import pytest

from data import lm
from data.builtin_text import read_builtin_text
from data.enwik8 import read_enwik8
from tests.helpers import write_enwik8_zip


def test_enwik8_split_sizes_and_contents(tmp_path):
  payload = bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8))
  splits = read_enwik8(write_enwik8_zip(tmp_path / 'enwik8.zip', payload), expected_bytes=2000)
  assert [len(splits[s]) for s in ('train', 'valid', 'test')] == [1800, 100, 100]
  assert splits['train'].tobytes() == payload[:1800]
  assert splits['valid'].tobytes() == payload[1800:1900]
  assert splits['test'].tobytes() == payload[1900:]


def test_standard_sizes_are_90_5_5_million(tmp_path, monkeypatch):
  # The real split, without writing 100 MB: fake the member's bytes.
  path = write_enwik8_zip(tmp_path / 'enwik8.zip', b'x')
  monkeypatch.setattr(zipfile.ZipFile, 'read', lambda self, name: bytes(100_000_000))
  splits = read_enwik8(path)
  assert [len(splits[s]) for s in ('train', 'valid', 'test')] == [90_000_000, 5_000_000, 5_000_000]


def test_missing_file_says_where_to_get_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'mattmahoney.*--config.data.path'):
    read_enwik8(str(tmp_path / 'nope.zip'))


def test_short_file_is_reported_as_truncated(tmp_path):
  path = write_enwik8_zip(tmp_path / 'enwik8.zip', b'a' * 1000)
  with pytest.raises(ValueError, match=r'1,000 bytes.*expected 100,000,000.*truncated'):
    read_enwik8(path)


def test_cut_zip_is_reported(tmp_path):
  path = write_enwik8_zip(tmp_path / 'enwik8.zip', bytes(range(256)) * 40)
  raw = open(path, 'rb').read()
  open(path, 'wb').write(raw[:len(raw) // 2])
  with pytest.raises(ValueError, match='not a readable enwik8 zip'):
    read_enwik8(path, expected_bytes=256 * 40)


def test_windows_overlap_by_one_and_targets_follow_inputs():
  data = np.arange(100, dtype=np.uint8)
  w = lm.Windows(data, 10)
  assert len(w) == 9
  np.testing.assert_array_equal(w[0], np.arange(11))
  np.testing.assert_array_equal(w[1][:1], [10])


def test_train_iterator_resumes_exactly():
  data = np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8)
  it = lm.train_dataset(data, 16, 4, seed=3)
  [next(it) for _ in range(5)]
  state = it.get_state()
  expected = [next(it)['tokens'] for _ in range(3)]
  it2 = lm.train_dataset(data, 16, 4, seed=3)
  it2.set_state(state)
  for e in expected:
    np.testing.assert_array_equal(next(it2)['tokens'], e)


@pytest.mark.parametrize('n', [1000, 1001, 1024 + 1])
def test_eval_batches_predict_every_byte_once(n):
  data = np.random.default_rng(n).integers(0, 256, n).astype(np.uint8)
  batches = list(lm.eval_batches(data, seq_len=32, global_batch=3))
  targets = np.concatenate([b['tokens'][:, 1:][b['mask'] > 0] for b in batches])
  np.testing.assert_array_equal(targets, data[1:])


def test_builtin_text_is_offline_python_source():
  d = read_builtin_text()
  assert len(d['train']) > 1_000_000 and len(d['valid']) > 50_000
  assert b'def ' in d['valid'][:200_000].tobytes()
