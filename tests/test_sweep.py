"""The mini reproduction on two mixers for a few steps, on the user's text (the 'text' source)."""
import os
import subprocess
import sys

from tests.helpers import tiny_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['model.num_layers=1', 'model.dim=32', 'model.num_heads=2', 'model.mlp_dim=64',
        'data.seq_len=32', 'model.max_len=32', 'batch_size=8', 'evals.sample.num_tokens=4',
        'log_every=1']


def sweep(out, text_path, *flags):
  cmd = [sys.executable, '-m', 'results.sweep', f'--out={out}', '--steps=4', '--curve_points=2',
         '--set=data.name=text', f'--set=data.path={text_path}',
         *(f'--set={s}' for s in TINY), *flags]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def test_two_mixers_give_the_table_and_the_plot_and_a_rerun_skips_them(tmp_path):
  (tmp_path / 'text.txt').write_bytes(tiny_text(20_000))
  out = tmp_path / 'mini'
  sweep(out, tmp_path / 'text.txt', '--mixers=softmax,aft_simple')
  table = (out / 'table.md').read_text()
  rows = {l.split('|')[1].strip(): l for l in table.splitlines() if l.startswith('| ')}
  assert set(rows) >= {'softmax', 'aft_simple'}
  assert '1.137' in rows['softmax'] and '1.209' in rows['aft_simple']  # the paper's bits/char
  assert '4 steps, 1,024 training tokens' in table
  assert (out / 'curves.png').stat().st_size > 1000
  # Each case's final evaluation is a results row, so the paper tables take it.
  from results import tables
  assert 'short run' in tables.build([str(out / 'softmax'), str(out / 'aft_simple')])
  again = sweep(out, tmp_path / 'text.txt', '--mixers=softmax,aft_simple')
  assert 'softmax: done before, skipped' in again and 'aft_simple: done before' in again


def test_window_sweep_names_cases_by_window(tmp_path):
  (tmp_path / 'text.txt').write_bytes(tiny_text(20_000))
  sweep(tmp_path / 'w', tmp_path / 'text.txt', '--windows=0,4')
  table = (tmp_path / 'w' / 'table.md').read_text()
  assert '| aft_local_w0 |' in table and '| aft_local_w4 |' in table
  assert '1.209' in table and '1.165' in table  # the paper's Table 5 at windows 0 and 4
