"""results.tables on hand-made workdirs: the paper's numbers beside ours, short runs marked and
kept out of the paper's column, Table 5's windows, and the README region."""
import json
import subprocess
import sys

import pytest

from results import paper, tables

FULL_ENWIK8 = 68_600  # the paper's steps at batch 128, T 1024


def write_run(root, name, *, task='text_lm', data='enwik8', mixer='softmax', layers=12,
              dim=512, window=32, step=1000, bits=1.5, split='test', results=True):
  """A workdir as train.py and eval.py leave it (batch 128; T 1024 or 32x32x3 images)."""
  workdir = root / name
  workdir.mkdir()
  shape = {'image_shape': [32, 32, 3]} if task == 'image_lm' else {'seq_len': 1024}
  config = {'task': task, 'batch_size': 128, 'num_steps': None, 'num_epochs': 100,
            'data': {'name': data, **shape},
            'model': {'mixer': mixer, 'num_layers': layers, 'dim': dim, 'num_heads': 8,
                      'mixer_options': {'aft_local': {'window': window, 'bias_dim': 256},
                                        'softmax': {'chunk_size': 1024}}}}
  (workdir / 'config.json').write_text(json.dumps(config))
  (workdir / 'run.json').write_text(json.dumps(
      {'command': f'python train.py --workdir={workdir}', 'device': 'NVIDIA H200',
       'device_count': 8, 'platform': 'gpu'}))
  (workdir / 'metrics.jsonl').write_text(
      json.dumps({'step': step, 'split': 'train', 'loss': 1.0, 'bits': bits}) + '\n')
  if results:
    rows = [{'step': step, 'split': split, 'task': task, 'mixer': mixer, 'data': data,
             'loss': 1.0, 'bits': bits, 'device': 'cpu',
             'command': f'python eval.py --workdir={workdir} --split={split}'}]
    (workdir / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  return str(workdir)


def table_rows(markdown, heading):
  """{(label, L, d): cells after them} of the table under `heading`."""
  section = markdown.split(heading, 1)[1].split('\n### ', 1)[0]
  rows = [line.strip('|').split(' | ') for line in section.splitlines()
          if line.startswith('| ') and not line.startswith('| method') and
          not line.startswith('| window')]
  return {tuple(c.strip() for c in r[:3]): [c.strip() for c in r[3:]] for r in rows}


def notes(markdown):
  """{workdir: its footnote number}."""
  return {line.split('`')[1]: int(line[3:line.index(']')]) for line in markdown.splitlines()
          if line.startswith('- [')}


def test_paper_value_beside_ours_and_short_run_marked(tmp_path):
  short = write_run(tmp_path, 'short', step=1000, bits=1.5)
  md = tables.build([short])
  rows = table_rows(md, '### Table 4')
  paper_test, paper_train, ours = rows[('Transformer', '12', '512')]
  assert (paper_test, paper_train) == ('1.137', '0.977')
  assert ours == '1.500 (short run; 1,000 steps, 131M tokens, cpu) [1]'
  assert '1.500' not in paper_test + paper_train
  assert rows[('AFT-simple', '24', '256')][2] == '—'  # a paper row we have no run for
  assert f'- [1] `{short}`: `python train.py --workdir={short}` then `python eval.py' in md
  assert '### Table 2' not in md and '### Table 5' not in md


def test_full_budget_run_is_not_marked(tmp_path):
  full = write_run(tmp_path, 'full', layers=24, dim=256, step=FULL_ENWIK8, bits=1.13)
  ours = table_rows(tables.build([full]), '### Table 4')[('Transformer', '24', '256')][2]
  assert ours == '1.130 (68,600 steps, 8.99B tokens, cpu) [1]'


def test_other_data_and_other_size_get_rows_of_their_own(tmp_path):
  run = write_run(tmp_path, 'quick', data='builtin', mixer='routing', layers=4, dim=128)
  rows = table_rows(tables.build([run]), '### Table 4')
  paper_test, _, ours = rows[('`routing`', '4', '128')]
  assert paper_test == '—'
  assert 'short run; other data: builtin; other size;' in ours


def test_images_go_to_table_2_in_bits_per_dim(tmp_path):
  run = write_run(tmp_path, 'cifar', task='image_lm', data='cifar10', mixer='aft_local',
                  window=256, layers=24, dim=256, step=78_125, bits=2.75)
  md = tables.build([run])
  assert '### Table 2: CIFAR-10, test bits/dim' in md
  paper_test, paper_train, ours = table_rows(md, '### Table 2')[('AFT-local-256', '24', '256')]
  assert (paper_test, paper_train) == ('2.74', '2.75')
  assert ours.startswith('2.750 (78,125 steps, 30.7B tokens, cpu)')


def test_table_5_takes_the_window_from_the_config(tmp_path):
  w8, w48 = (write_run(tmp_path, f'w{w}', mixer='aft_local', window=w, layers=24, dim=256)
             for w in (8, 48))
  simple = write_run(tmp_path, 'simple', mixer='aft_simple', layers=24, dim=256)
  softmax = write_run(tmp_path, 'softmax')  # no AFT-local window: Table 4 only
  md = tables.build([w8, w48, simple, softmax])
  rows, note = table_rows(md, '### Table 5'), notes(md)
  assert rows[('8', '24', '256')][0] == '1.162'
  assert rows[('8', '24', '256')][1].endswith(f'[{note[w8]}]')
  assert rows[('48', '24', '256')][0] == '—'  # a window the paper did not try
  assert rows[('48', '24', '256')][1].endswith(f'[{note[w48]}]')
  assert rows[('0 (AFT-simple)', '24', '256')][1].endswith(f'[{note[simple]}]')
  assert rows[('32', '24', '256')] == ['1.154', '—']
  assert f'[{note[softmax]}]' not in md.split('### Table 5')[1]


def test_newest_test_row_wins_and_valid_is_the_fallback(tmp_path):
  run = write_run(tmp_path, 'r', split='valid', bits=1.4)
  assert '1.400 (short run; valid split;' in tables.build([run])
  with open(f'{run}/results.jsonl', 'a') as f:
    for step, bits in ((900, 1.3), (1000, 1.2)):
      f.write(json.dumps({'step': step, 'split': 'test', 'bits': bits}) + '\n')
  assert '1.200 (short run; 1,000 steps, 131M tokens, 8x NVIDIA H200)' in tables.build([run])


def test_workdir_without_a_result_is_listed(tmp_path):
  done = write_run(tmp_path, 'done')
  pending = write_run(tmp_path, 'pending', step=250, results=False)
  md = tables.build([done, pending])
  assert f'Not in the tables:\n\n- `{pending}`: no eval.py result (trained to step 250)' in md
  assert md.count('[2]') == 0


README = ('# Title\r\n\nIntro  \n<!-- results:begin -->\nold tables\n\nmore old\n'
          '<!-- results:end -->\nAfter, kept \u2014 byte for byte\n')


def test_readme_region_replaced_and_the_rest_kept(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_bytes(README.encode())
  run = write_run(tmp_path, 'r')
  assert tables.main([str(tmp_path / 'r*'), f'--readme={readme}', f'--out={tmp_path}/t.md']) == 0
  text = readme.read_bytes().decode()
  head, tail = README.split('old tables')[0], README.split('more old\n')[1]
  assert text.startswith(head) and text.endswith(tail)
  generated = (tmp_path / 't.md').read_text()
  assert text == head + '\n' + generated + '\n' + tail
  assert f'`{run}`' in generated and 'old tables' not in text


def test_missing_markers_is_an_error_naming_the_file(tmp_path, capsys):
  readme = tmp_path / 'README.md'
  readme.write_text('# no markers\n<!-- results:end -->\n<!-- results:begin -->\n')
  write_run(tmp_path, 'r')
  assert tables.main([str(tmp_path / 'r'), f'--readme={readme}']) == 2
  assert f'ERROR: {readme} has no "<!-- results:begin -->"' in capsys.readouterr().err
  with pytest.raises(ValueError, match='DOC.md'):
    tables.replace_region('text\n', 'tables\n', 'DOC.md')


def test_no_matching_run_directory_is_an_error(tmp_path, capsys):
  assert tables.main([str(tmp_path / 'nothing*')]) == 2
  assert 'no run directory matches' in capsys.readouterr().err


def test_paper_lookups_for_the_sweep():
  assert paper.enwik8_test_bpc('softmax') == 1.137
  assert paper.enwik8_test_bpc('softmax', (24, 256)) == 1.130
  assert paper.enwik8_test_bpc('aft_simple') == 1.209
  assert paper.enwik8_test_bpc('routing') is None
  assert (paper.window_test_bpc(0), paper.window_test_bpc('32')) == (1.209, 1.154)
  assert paper.TABLE2.tokens == 78_125 * 128 * 3072


def test_results_import_no_jax():
  code = 'import sys, results.tables, results.paper; assert "jax" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], check=True)
