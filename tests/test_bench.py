"""The bench's smoke test: tiny sizes through `python -m bench.mixers`, checking the output
files' structure (never timings), and the sweep's skip rules and the slope fit."""
import csv
import json
import os
import subprocess
import sys

import pytest

import mixers
from bench import report, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENGTHS = (32, 64)
MODES = ('causal',)  # one mode keeps the test fast; both go through the same code


def second_mixer():
  """A cheap registered mixer beside softmax, where one exists."""
  others = [n for n in mixers.names() if n != 'softmax']
  return ['aft_simple'] if 'aft_simple' in others else others[:1]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  out = tmp_path_factory.mktemp('bench')
  names = ['softmax'] + second_mixer()
  proc = subprocess.run(
      [sys.executable, '-m', 'bench.mixers', f'--mixers={",".join(names)}',
       f'--lengths={",".join(map(str, LENGTHS))}', f'--modes={",".join(MODES)}', '--batch=1',
       '--heads=2', '--head_dim=8', '--repeats=1', '--fit_min_length=32', f'--out={out}'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out, names, proc.stdout


def test_csv_has_every_case_and_column(run):
  out, names, _ = run
  with open(out / 'mixers_cpu.csv') as f:
    reader = csv.DictReader(f)
    rows = list(reader)
  assert tuple(reader.fieldnames) == report.COLUMNS
  assert {(r['impl'], r['mode'], int(r['length'])) for r in rows} == {
      (n, m, l) for n in names for m in MODES for l in LENGTHS}
  for r in (r for r in rows if r['impl'] == 'softmax'):
    assert r['status'] == 'ok', r['error']
    assert float(r['fwd_s']) > 0 and float(r['fwdbwd_s']) > 0
    assert int(r['fwdbwd_xla_bytes']) > 0 and r['fwdbwd_peak_bytes'] != ''


def test_json_records_machine_versions_and_slopes(run):
  out, names, _ = run
  with open(out / 'mixers_cpu.json') as f:
    data = json.load(f)
  assert {'command', 'machine', 'versions', 'settings', 'slopes', 'rows'} <= set(data)
  assert {'cpu', 'cores', 'backend', 'device_kind'} <= set(data['machine'])
  assert {'jax', 'jaxlib', 'flax'} <= set(data['versions'])
  assert len(data['rows'][0]['fwd_times']) == 1
  for mode in MODES:
    assert set(data['slopes'][mode]) == set(names)
    assert all(isinstance(data['slopes'][mode]['softmax'][k], float)
               for k, _, _ in report.METRICS)


def test_markdown_has_a_table_per_mode_and_metric_with_slopes(run):
  out, names, stdout = run
  text = (out / 'mixers_cpu.md').read_text()
  assert text in stdout.replace('\r', '')
  assert 'Machine:' in text and 'Command: `python -m bench.mixers' in text
  for mode in MODES:
    for _, title, _ in report.METRICS:
      assert f'### {mode}: {title}' in text
  header = '| mixer | L=32 | L=64 | slope |'
  assert text.count(header) == len(MODES) * len(report.METRICS)
  softmax_rows = [l for l in text.splitlines() if l.startswith('| softmax |')]
  assert len(softmax_rows) == len(MODES) * len(report.METRICS)
  for line in softmax_rows:
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[1].startswith('1.00×') and float(cells[-1]) == float(cells[-1])
  for name in names:
    assert sum(l.startswith(f'| {name} |') for l in text.splitlines()) >= len(MODES)


def test_plots_or_a_message(run):
  out, _, stdout = run
  try:
    import matplotlib  # noqa: F401
  except ImportError:
    assert 'matplotlib is not installed: plots skipped' in stdout
  else:
    assert (out / 'mixers_cpu_time_causal.png').exists()
    assert (out / 'mixers_cpu_memory_causal.png').exists()


def test_sweep_skips_longer_lengths_after_a_failure(monkeypatch):
  statuses = {('a', 1): 'ok', ('a', 2): 'oom', ('b', 1): 'n/a'}
  ran = []

  def fake(spec, timeout):
    ran.append((spec['impl'], spec['length']))
    return {'status': statuses[spec['impl'], spec['length']]}

  monkeypatch.setattr(sweep, 'run_case', fake)
  rows = sweep.sweep([{'impl': 'a'}, {'impl': 'b'}], [3, 1, 2], timeout=1, log=lambda r: None)
  assert ran == [('a', 1), ('a', 2), ('b', 1)]
  assert [(r['impl'], r['length'], r['status']) for r in rows] == [
      ('a', 1, 'ok'), ('a', 2, 'oom'), ('a', 3, 'skipped'),
      ('b', 1, 'n/a'), ('b', 2, 'n/a'), ('b', 3, 'n/a')]


def test_slope_fits_only_lengths_from_the_minimum():
  points = [(256, 5.0), (1024, 1.0), (2048, 4.0), (4096, 16.0), (8192, None)]
  assert report.slope(points, 1024) == pytest.approx(2.0)
  assert report.slope(points, 4096) is None


def test_scan_peer_equals_causal_favor():
  """The bench's sequential-scan peer (its own custom gradient) computes our causal FAVOR+."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from bench.scan_peer import favor_scan
  from performer.attention import favor_attention
  from performer.features import feature_map, random_projection

  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    q, k, v = (jnp.asarray(rng.standard_normal((2, 37, 2, 8))) for _ in range(3))
    w = random_projection(jax.random.key(0), 12, 8).astype(jnp.float64)

    def ours(q, k, v):
      return favor_attention(q, k, v, w, causal=True, chunk_size=8, block_size=16)

    def scan(q, k, v):
      (qf, _), (kf, ls) = feature_map(w)(q), feature_map(w)(k)
      return favor_scan(qf, kf, v, ls)

    cot = jnp.asarray(rng.standard_normal(q.shape))
    for f in (ours, scan):
      assert f(q, k, v).dtype == jnp.float64
    np.testing.assert_allclose(scan(q, k, v), ours(q, k, v), rtol=1e-9, atol=1e-12)
    grads = [jax.grad(lambda *a: jnp.sum(f(*a) * cot), argnums=(0, 1, 2))(q, k, v)
             for f in (ours, scan)]
    for a, b in zip(*grads):
      np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize('config,extra,length', [
    ('configs/enwik8.py:quick', ['--lengths=16,32'], None),
    # An image task: T is the image's token count (4 x 4 x 3), --lengths is ignored.
    ('configs/cifar10.py:quick', ['--config.data.image_shape=(4,4,3)'], 48)])
def test_train_step_bench_writes_its_table(tmp_path, config, extra, length):
  proc = subprocess.run(
      [sys.executable, '-m', 'bench.train_step', f'--config={config}', '--mixers=softmax',
       '--small_model=false', '--config.batch_size=2', '--config.model.num_layers=1',
       '--config.model.dim=16', '--config.model.num_heads=2', '--config.model.mlp_dim=32',
       '--repeats=1', f'--out={tmp_path}', *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / 'train_step_cpu.json') as f:
    data = json.load(f)
  rows = data['rows']
  assert [r['length'] for r in rows] == ([16, 32] if length is None else [length])
  for r in rows:
    assert r['status'] == 'ok', r.get('error')
    assert (r['num_layers'], r['dim'], r['batch']) == (1, 16, 2)
    assert r['tokens_per_s'] == pytest.approx(2 * r['length'] / r['step_s'])
    assert 0 < r['mixer_share']
  text = (tmp_path / 'train_step_cpu.md').read_text()
  assert '| softmax |' in text and 'Model: 1 layers, d 16' in text


def test_favor_error_table():
  proc = subprocess.run(
      [sys.executable, '-m', 'bench.favor_error', '--length=32', '--head_dim=8',
       '--features=4,16', '--seeds=2'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [l for l in proc.stdout.splitlines() if l.startswith('| ') and 'e-' in l]
  assert [tuple(c.strip() for c in l.strip('|').split('|')[:2]) for l in rows] == [
      (mode, kind) for mode in ('bidirectional', 'causal') for kind in ('orthogonal', 'i.i.d.')]
  for l in rows:
    assert all(float(c) > 0 for c in l.strip('|').split('|')[2:])
