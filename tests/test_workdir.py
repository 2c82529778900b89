"""A workdir's checkpoints are never lost: to a changed config, a mistaken eval, a second
process, repeated damage, a failed save; errors are one line; resumed metrics have each step
once. The command-line cases run in subprocesses (tests/cli_run.py) on the tiny config."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

import eval as eval_lib
import train
from tests.helpers import read_metrics, tiny_config
from trainlib.checkpoints import Checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, wait=True):
  cmd = [sys.executable, '-m', 'tests.cli_run', *map(str, args)]
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
  # The timeout only guards the suite: a hang (orbax waits 300 s for a failed save) fails it.
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def finished(reference):
  return reference[0]


def tree_digest(path) -> dict:
  out = {}
  for f in sorted(glob.glob(os.path.join(path, '**', '*'), recursive=True)):
    out[os.path.relpath(f, path)] = (hashlib.md5(open(f, 'rb').read()).hexdigest()
                                     if os.path.isfile(f) else 'dir')
  return out


def one_error_line(stderr: str) -> str:
  assert 'Traceback' not in stderr, stderr[-3000:]
  errors = [l for l in stderr.splitlines() if l.startswith('ERROR: ')]
  assert len(errors) == 1, stderr[-3000:]
  return errors[0]


def test_changed_config_rerun_keeps_every_checkpoint_and_names_the_field(finished, zip_path,
                                                                         tmp_path, capsys):
  shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
  before = tree_digest(tmp_path / 'checkpoints')
  proc = cli('train', zip_path, tmp_path, 'model.num_layers=3')
  assert proc.returncode == 2
  line = one_error_line(proc.stderr)
  assert 'model.num_layers: 2 -> 3' in line and '--workdir' in line and 'init_from' in line
  assert tree_digest(tmp_path / 'checkpoints') == before
  # Linear attention's arrays have softmax's shapes: the recorded config still tells them apart.
  assert train.cli(tiny_config(zip_path, **{'model.mixer': 'linear'}), str(tmp_path)) == 2
  assert "model.mixer: 'softmax' -> 'linear'" in one_error_line(capsys.readouterr().err)
  assert tree_digest(tmp_path / 'checkpoints') == before
  # A non-structural change (more steps) resumes, says what changed, and trains on.
  proc = cli('train', zip_path, tmp_path, 'num_steps=13')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Resumed from' in proc.stdout and 'num_steps: 12 -> 13' in proc.stdout


def test_mismatched_eval_leaves_the_workdir_byte_identical(finished, zip_path, tmp_path):
  shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
  before = tree_digest(tmp_path)
  proc = cli('eval', zip_path, tmp_path, 'model.dim=64')
  assert proc.returncode == 2
  assert 'model.dim: 32 -> 64' in one_error_line(proc.stderr)
  assert tree_digest(tmp_path) == before
  proc = cli('eval', zip_path, tmp_path / 'missing')
  assert proc.returncode == 2 and 'no checkpoints' in one_error_line(proc.stderr)
  assert not os.path.exists(tmp_path / 'missing')


def test_eval_prints_its_result_even_when_the_row_cannot_be_written(finished, zip_path,
                                                                    tmp_path, capsys):
  shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
  (tmp_path / 'results.jsonl').unlink(missing_ok=True)
  os.mkdir(tmp_path / 'results.jsonl')  # unwritable as a file, even for root
  row = eval_lib.evaluate_checkpoint(tiny_config(zip_path), str(tmp_path), 'valid')
  out = capsys.readouterr().out
  assert f'valid at step 12: loss {row["loss"]:.4f}' in out
  assert 'WARNING: could not append the row' in out


def damage(step_dir):
  for f in glob.glob(os.path.join(step_dir, 'state', '**', '*'), recursive=True):
    if os.path.isfile(f) and os.path.getsize(f) > 100:
      with open(f, 'r+b') as fh:
        fh.truncate(os.path.getsize(f) // 2)


def test_repeated_damage_falls_back_to_the_previous_step(finished, zip_path, tmp_path):
  shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
  shutil.copytree(tmp_path / 'checkpoints' / '12', tmp_path / 'checkpoints' / '12.corrupt')
  aside_before = tree_digest(tmp_path / 'checkpoints' / '12.corrupt')
  damage(tmp_path / 'checkpoints' / '12')
  proc = cli('train', zip_path, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'checkpoints/12 is unreadable' in proc.stdout and '12.corrupt.1' in proc.stdout
  assert '<bound method' not in proc.stdout
  assert 'Resumed from' in proc.stdout and '/9 (step 9)' in proc.stdout
  assert tree_digest(tmp_path / 'checkpoints' / '12.corrupt') == aside_before
  assert os.path.isdir(tmp_path / 'checkpoints' / '12.corrupt.1')


def test_second_process_on_a_workdir_stops_naming_the_first(zip_path, tmp_path):
  first = cli('train', zip_path, tmp_path, 'num_steps=100000', wait=False)
  try:
    lock = tmp_path / 'lock'
    while not lock.exists() and first.poll() is None:
      time.sleep(0.1)
    assert first.poll() is None, first.communicate()[1][-3000:]
    second = cli('train', zip_path, tmp_path)
    assert second.returncode == 2
    line = one_error_line(second.stderr)
    assert f'in use by process {first.pid}' in line
  finally:
    first.kill()
    first.communicate()
  # The holder is gone (killed): the next run takes the lock over and trains.
  proc = cli('train', zip_path, tmp_path, 'num_steps=3', 'checkpoint_every=3')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Taking over the lock' in proc.stdout and not lock.exists()


def test_failed_save_stops_the_run_promptly_and_the_next_run_resumes(zip_path, tmp_path):
  proc = cli('train', zip_path, tmp_path, 'full_disk_from=6')
  assert proc.returncode == 1
  line = one_error_line(proc.stderr)
  assert f'{tmp_path}/checkpoints/6 failed' in line and 'No space left on device' in line
  assert f'last checkpoint that committed is {tmp_path}/checkpoints/3' in line
  assert [r['step'] for r in read_metrics(tmp_path)][-1] < 9  # stopped before the next save
  proc = cli('train', zip_path, tmp_path)
  assert proc.returncode == 0 and '/3 (step 3)' in proc.stdout, proc.stderr[-3000:]
  assert sorted(r['step'] for r in read_metrics(tmp_path)) == list(range(1, 13))


def test_bad_values_are_refused_with_one_line(zip_path, tmp_path, capsys):
  for overrides, message in [({'num_steps': -5}, 'config.num_steps must be positive, got -5'),
                             ({'num_steps': 0}, 'config.num_steps must be positive, got 0'),
                             ({'evals.valid.every': -1}, 'config.evals.valid.every must be >= 0'),
                             ({'model.mixer': 'nope'}, "unknown mixer 'nope'")]:
    assert train.cli(tiny_config(zip_path, **overrides), str(tmp_path / 'w')) == 2
    assert message in one_error_line(capsys.readouterr().err)
  assert not os.path.exists(tmp_path / 'w' / 'metrics.jsonl')


def test_best_checkpoint_survives_reopening(tmp_path):
  state = {'w': jnp.ones(3)}

  def save(step, loss):
    ckpt = Checkpoints(str(tmp_path), keep=1)
    ckpt.save(step, state, {'iterator': step}, {'valid/loss': loss} if loss else None)
    ckpt.close()
    return sorted(int(n) for n in os.listdir(tmp_path) if n.isdigit())

  assert [save(1, 1.0), save(2, 5.0), save(3, 6.0)][-1] == [1, 3]
  assert save(4, 7.0) == [1, 4]  # reopened: step 1 is still the best
  assert save(5, None) == [1, 5]  # a save without an evaluation keeps it too
  with open(tmp_path / '1' / 'metrics' / 'metrics') as f:
    assert json.load(f) == {'valid/loss': 1.0}


@pytest.mark.parametrize('flag, message', [
    ('--config.model.nope=1', "unknown config field 'nope'"),
    ('--config.model.mixer_options.performer.nope=1',
     "unknown mixer option 'nope'; its options are: block_size, chunk_size")])
def test_bad_flags_are_one_line_with_status_2(flag, message, tmp_path):
  proc = subprocess.run([sys.executable, 'train.py', '--config=configs/enwik8.py:quick',
                         f'--workdir={tmp_path / "w"}', flag], cwd=ROOT, capture_output=True,
                        text=True, timeout=240, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2
  assert message in one_error_line(proc.stderr)
  assert not os.path.exists(tmp_path / 'w')
