"""Long Range Arena readers on tiny files in the release formats, and the ListOps generator."""
import os
import re
import types

import numpy as np
import pytest

from data import listops
from data.lra import LayoutError, byte_tokens
from data.lra import image as lra_image
from data.lra import listops as lra_listops
from data.lra import pathfinder, retrieval, text
from tests import lra_files


def direct_value(source: str) -> int:
  """Evaluates a release-form expression by rewriting it into Python calls (a reference that
  shares nothing with data/listops.py)."""
  ops = {'[MIN': 'min_', '[MAX': 'max_', '[MED': 'med_', '[SM': 'sm_'}
  words = [w for w in source.split() if w not in '()']
  code = []
  for w in words:
    if w in ops:
      code.append(f'{ops[w]}([')
    elif w == ']':
      code.append(']),')
    else:
      code.append(f'{w},')
  env = {'min_': min, 'max_': max, 'sm_': lambda v: sum(v) % 10,
         'med_': lambda v: sorted(v)[(len(v) - 1) // 2] if len(v) % 2 else
         (sorted(v)[len(v) // 2 - 1] + sorted(v)[len(v) // 2]) // 2}
  return eval(''.join(code).rstrip(','), env)  # noqa: S307 (our own generated expression)


def test_generator_values_lengths_uniqueness_and_seed():
  pairs = list(listops.generate(300, seed=3, min_length=10, max_length=40, max_depth=5))
  for source, value in pairs:
    assert value == direct_value(source)
    n = len([w for w in source.split() if w not in '()'])
    assert 10 <= n <= 40
  assert len({s for s, _ in pairs}) == 300
  assert len({v for _, v in pairs}) == 10  # every class occurs
  assert pairs == list(listops.generate(300, seed=3, min_length=10, max_length=40, max_depth=5))
  assert pairs[:5] != list(listops.generate(5, seed=4, min_length=10, max_length=40, max_depth=5))
  # The release's bracketing: [MAX 2 9 ] is ( ( ( [MAX 2 ) 9 ) ] ).
  assert listops.to_string(('[MAX', [2, 9])) == '( ( ( [MAX 2 ) 9 ) ] )'
  assert listops.evaluate(('[MED', [1, 2, 4, 9])) == direct_value('[MED 1 2 4 9 ]') == 3


def test_generated_splits_are_disjoint_and_fixed():
  kw = dict(seed=0, length=32, min_length=5, max_length=30, max_depth=3, max_args=4)
  a = lra_listops.generate_splits({'train': 50, 'valid': 20}, **kw)
  b = lra_listops.generate_splits({'valid': 20, 'train': 80}, **kw)
  assert a['valid'].items == b['valid'].items  # evaluation splits do not depend on train's size
  assert not set(a['train'].items) & set(a['valid'].items)


def test_listops_release_reader(tmp_path):
  pairs = lra_files.write_listops(tmp_path)
  src = lra_listops.read_release(str(tmp_path), 'valid', 40)
  assert len(src) == 8
  for i, (source, target) in enumerate(pairs['val']):
    item = src[i]
    assert item['label'] == target
    words = [w for w in source.split() if w not in '()']
    assert [lra_listops.VOCAB[t] for t in item['tokens'][:len(words)]] == words
    assert not item['tokens'][len(words):].any()
  # root may also be the listops-1000 folder itself
  assert len(lra_listops.read_release(str(tmp_path / 'listops-1000'), 'test', 40)) == 8
  with pytest.raises(LayoutError, match=r'(?s)basic_train\.tsv not found.*nowhere/listops-1000/basic_train.tsv'):
    lra_listops.read_release(str(tmp_path / 'nowhere'), 'train', 40)
  path = tmp_path / 'listops-1000' / 'basic_test.tsv'
  path.write_text('Input\tOutput\n( [MAX 1 2 ] )\t2\n')
  with pytest.raises(LayoutError, match=r"header row \['Source', 'Target'\]"):
    lra_listops.read_release(str(tmp_path), 'test', 40)
  path.write_text('Source\tTarget\n( [MAX 1 X ] )\t2\n')
  with pytest.raises(LayoutError, match=r"\['X'\] are not ListOps tokens"):
    lra_listops.read_release(str(tmp_path), 'test', 40)


def test_retrieval_reader_keeps_quotes_and_checks_columns(tmp_path):
  rows = lra_files.write_aan(tmp_path)
  src = retrieval.read_release(str(tmp_path), 'valid', 24)  # valid is the .eval.tsv file
  label, text1, text2 = rows['eval'][1]
  assert '"' in text1 and src[1]['label'] == label == 1
  np.testing.assert_array_equal(src[1]['tokens'][0], byte_tokens(text1.encode(), 24))
  np.testing.assert_array_equal(src[1]['tokens'][1], byte_tokens(text2.encode(), 24))
  assert src[1]['tokens'].shape == (2, 24)
  assert byte_tokens(b'ab', 4).tolist() == [98, 99, 0, 0]
  bad = tmp_path / 'tsv_data' / 'new_aan_pairs.test.tsv'
  bad.write_text(lra_files.aan_row(1, 0, 'a', 'b') + '1.0\tonly\tthree\n')
  with pytest.raises(LayoutError, match=r'line 2: expected 5 tab-separated columns, got 3'):
    retrieval.read_release(str(tmp_path), 'test', 24)
  bad.write_text(lra_files.aan_row(1, 0, 'a', 'b').replace('1.0', 'yes', 1))
  with pytest.raises(LayoutError, match=r"label 0 or 1, got 'yes'"):
    retrieval.read_release(str(tmp_path), 'test', 24)


def test_pathfinder_reader_split_empty_png_and_missing_metadata(tmp_path):
  base, labels = lra_files.write_pathfinder(tmp_path, n=21, empty=(3,))
  paths, got_labels, empty = pathfinder.index(str(tmp_path), 32, 'curv_contour_length_14')
  assert [os.path.basename(p) for p in empty] == ['sample_3.png'] and len(paths) == 20
  np.testing.assert_array_equal(got_labels, labels)
  splits = {s: pathfinder.read_release(str(tmp_path), s, seed=0) for s in ('train', 'valid', 'test')}
  assert [len(s) for s in splits.values()] == [16, 2, 2]
  assert sorted(sum((s.items for s in splits.values()), [])) == sorted(paths)
  again = pathfinder.read_release(str(tmp_path), 'test', seed=0)
  assert again.items == splits['test'].items
  assert pathfinder.read_release(str(tmp_path), 'train', seed=1).items != splits['train'].items
  item = splits['train'][0]
  assert item['tokens'].shape == (1024,) and item['tokens'].dtype == np.int32
  bright = item['tokens'].reshape(32, 32)[:, :16].mean() > 150
  assert bright == bool(item['label'])
  with open(os.path.join(base, 'metadata', '0.npy'), 'a') as f:
    f.write('imgs/0 sample_99.png 0 1 14 1.5\n')  # an image the release lacks
  pathfinder.index.cache_clear()
  with pytest.raises(LayoutError, match=r'sample_99.png \(named in .*0.npy line 22\) not found'):
    pathfinder.index(str(tmp_path), 32, 'curv_contour_length_14')
  os.rename(os.path.join(base, 'metadata'), os.path.join(base, 'meta'))
  pathfinder.index.cache_clear()
  with pytest.raises(LayoutError, match=r'(?s)metadata folder.*looked for:.*curv_contour_length_14/metadata'):
    pathfinder.index(str(tmp_path), 32, 'curv_contour_length_14')


def test_aclimdb_reader_orders_by_label_then_id(tmp_path):
  texts = lra_files.write_aclimdb(tmp_path, n=11)
  src = text.read_aclimdb(str(tmp_path), 'valid', 64)  # valid = the test split, as in LRA
  assert len(src) == 22 and src.labels.tolist() == [0] * 11 + [1] * 11
  expected = texts[('test', 1, 10)].encode()  # 10_7.txt comes after 9_7.txt
  np.testing.assert_array_equal(src[21]['tokens'], byte_tokens(expected, 64))
  assert b'<br />' in expected
  with pytest.raises(LayoutError, match='IMDB train folder'):
    text.read_aclimdb(str(tmp_path / 'nowhere'), 'train', 64)


def test_grey_cifar_split_and_conversion(tmp_path):
  from tests.test_cifar import write_archive
  expected = write_archive(tmp_path / 'c.tar.gz', per_batch=4)  # 20 train, 4 test images
  cfg = types.SimpleNamespace(format='archive', path=str(tmp_path / 'c.tar.gz'))
  train, valid = lra_image.read(cfg, 'train'), lra_image.read(cfg, 'valid')
  assert (len(train), len(valid), len(lra_image.read(cfg, 'test'))) == (18, 2, 4)
  rgb = expected['train'][0][19].reshape(3, 32, 32).transpose(1, 2, 0).astype(np.float64)
  ref = np.floor((rgb @ [0.2989, 0.5870, 0.1140]) / 255 * 255.5).clip(0, 255).reshape(-1)
  assert np.abs(valid[1]['tokens'] - ref).max() <= 1  # float32 vs float64 rounding at most
  assert valid[1]['label'] == expected['train'][1][19]


def test_imdb_from_tfds_array_record_under_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    src = text.read_tfds('', 'valid', 32)  # valid reads the test split, as in LRA
    assert len(src) == 5 and set(src.labels.tolist()) <= {0, 1}
    row = src.items[2]
    raw = row['text'] if isinstance(row['text'], bytes) else row['text'].encode()
    np.testing.assert_array_equal(src[2]['tokens'], byte_tokens(raw, 32))
