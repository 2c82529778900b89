"""The LRA table and chart from run directories and a results file."""
import json

import pytest
from PIL import Image

from results import lra


def write_run(path, task, mixer, top1, step, variant='paper', test=True):
  path.mkdir()
  (path / 'config.json').write_text(json.dumps(
      {'task': 'lra', 'variant': variant, 'data': {'name': task}, 'model': {'mixer': mixer}}))
  (path / 'run.json').write_text(json.dumps({'command': f'python train.py {task}',
                                             'device': 'cpu', 'device_count': 1}))
  (path / 'metrics.jsonl').write_text(
      json.dumps({'step': step, 'split': 'train', 'loss': 1.0, 'steps_per_s': 4.0}) + '\n'
      + json.dumps({'step': step, 'split': 'valid', 'top1': top1 - 0.1}) + '\n')
  if test:
    (path / 'results.jsonl').write_text(json.dumps(
        {'step': step, 'split': 'test', 'top1': top1, 'command': f'python eval.py {task}',
         'device': 'cpu'}) + '\n')
  (path / 'memory.json').write_text(json.dumps({'peak_bytes': 2 ** 30}))


def test_table_and_chart_from_runs_and_a_results_file(tmp_path):
  runs = tmp_path / 'runs'
  runs.mkdir()
  write_run(runs / 'a', 'listops', 'aft_local', 0.40, 5000)
  write_run(runs / 'b', 'text', 'aft_local', 0.60, 20000, test=False)  # valid only
  write_run(runs / 'c', 'listops', 'softmax', 0.30, 100, variant='small')
  (runs / 'notlra').mkdir()
  (runs / 'notlra' / 'config.json').write_text(json.dumps({'task': 'text_lm'}))
  rows = tmp_path / 'more.jsonl'
  scores = {'listops': 37.0, 'text': 63.0, 'retrieval': 80.0, 'image': 41.0, 'pathfinder': 66.0}
  rows.write_text(''.join(json.dumps(
      {'task': t, 'mixer': 'performer', 'protocol': 'small', 'accuracy': a, 'step': 50000,
       'steps_per_s': 2.0, 'peak_memory_bytes': 2 ** 29, 'device': 'H200',
       'command': f'python train.py {t}'}) + '\n' for t, a in scores.items()))
  out = tmp_path / 'out'
  assert lra.main([str(runs / '*'), str(rows), f'--out={out}']) == 0
  md = (out / 'lra.md').read_text()
  lra_part, small_part = md.split('### The 2-layer')
  assert '| Transformer (published) | 36.37 | 64.27 | 57.46 | 42.44 | 71.40 | 54.39 |' in lra_part
  assert '| `aft_local` (ours) | 40.00 [1] | 50.00 [2] (valid) | — | — | — | — |' in lra_part
  assert ('[1] aft_local, listops: test accuracy at step 5,000 on cpu, 4.00 steps/s; '
          '`python train.py listops ; python eval.py listops`') in lra_part
  assert '[2] aft_local, text: valid accuracy at step 20,000' in lra_part
  assert '`python train.py text`' in lra_part  # no eval.py row: the training command
  assert '| Transformer (published) | 38.37 | 61.95 | 80.69 | 40.57 | 65.26 | 57.37 |' in small_part
  avg = sum(scores.values()) / 5
  assert f'| `performer` (ours) | 37.00 [1] | 63.00 [2] | 80.00 [3] | 41.00 [4] | 66.00 [5] | ' \
         f'{avg:.2f} |' in small_part
  assert '`softmax` (ours) | 30.00 [6]' in small_part
  assert "notlra: task 'text_lm' is not lra" in md
  with Image.open(out / 'lra_chart.png') as im:
    assert im.size[0] > 1000 and im.size[1] > 500
  points = {(p['protocol'], p['mixer']): p for p in lra.chart_points(lra.collect(
      [str(runs / '*'), str(rows)])[0])}
  assert points[('small', 'performer')]['accuracy'] == pytest.approx(avg)
  assert points[('small', 'performer')]['peak_memory_gb'] == 0.5
  assert points[('lra', 'aft_local')]['tasks'] == ['listops', 'text']


def test_bad_results_are_named(tmp_path, capsys):
  rows = tmp_path / 'r.jsonl'
  rows.write_text(json.dumps({'task': 'listops', 'mixer': 'x'}) + '\n')
  assert lra.main([str(rows), f'--out={tmp_path}']) == 1
  assert "line 1: missing ['accuracy']" in capsys.readouterr().err
  assert lra.main([str(tmp_path / 'none*'), f'--out={tmp_path}']) == 1
