"""The training loop end to end on a tiny enwik8 zip: learning, eval.py, resume, bad input."""
import glob
import os
import shutil

import jax
import numpy as np
import pytest

import eval as eval_lib
import mixers
import train
from tests.helpers import (assert_same_end, final_params, on_each_batch, read_metrics,
                           tiny_config, tiny_text)
from trainlib.checkpoints import Checkpoints
from trainlib.run import Run


def test_loss_falls_and_outputs_are_written(reference):
  workdir, result = reference
  rows = read_metrics(workdir)
  assert [r['step'] for r in rows] == list(range(1, 13))
  assert rows[-1]['loss'] < rows[0]['loss'] - 1.0
  assert np.isfinite(result['valid']['bits']) and result['valid']['bits'] < 8.0
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')))[-3:] == ['12', '6', '9']
  assert glob.glob(os.path.join(workdir, 'tb', 'events.out.tfevents.*'))
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  assert len(result['sample']['sample']) > 0
  assert open(os.path.join(workdir, 'sample.txt')).read() == result['sample']['sample']


def test_eval_reads_the_newest_checkpoint(reference, zip_path):
  workdir, result = reference
  row = eval_lib.evaluate_checkpoint(tiny_config(zip_path), workdir, 'valid')
  assert row['step'] == 12
  np.testing.assert_allclose(row['bits'], result['valid']['bits'], rtol=1e-6)
  test_row = eval_lib.evaluate_checkpoint(tiny_config(zip_path), workdir, 'test')
  assert test_row['tokens'] == 0.05 * len(tiny_text()) - 1
  with open(os.path.join(workdir, 'results.jsonl')) as f:
    assert len(f.readlines()) == 2


class Killed(Exception):
  pass


def test_killed_and_resumed_run_ends_where_uninterrupted_run_ends(reference, zip_path, tmp_path):
  ref_dir = reference[0]
  config = tiny_config(zip_path)

  def dies_at_batch_8(n):
    if n == 8:
      raise Killed()

  undo = on_each_batch(dies_at_batch_8)
  try:
    with pytest.raises(Killed):
      train.train_and_evaluate(config, str(tmp_path))
  finally:
    undo()
  assert Checkpoints(str(tmp_path / 'checkpoints')).latest_step() == 6
  resumed = train.train_and_evaluate(config, str(tmp_path))

  assert_same_end(config, reference, str(tmp_path), resumed)
  by_step = {r['step']: r['loss'] for r in read_metrics(tmp_path)}
  for r in read_metrics(ref_dir):
    assert by_step[r['step']] == r['loss']
  # The rows of the steps redone after the resume are not repeated.
  assert [r['step'] for r in read_metrics(tmp_path)] == list(range(1, 13))
  assert [r['step'] for r in read_metrics(tmp_path, 'valid')] == [6, 12]


def test_corrupt_newest_checkpoint_is_skipped(reference, zip_path, tmp_path, capsys):
  ref_dir, ref = reference
  shutil.copytree(ref_dir, tmp_path, dirs_exist_ok=True)
  for f in glob.glob(str(tmp_path / 'checkpoints' / '12' / 'state' / '**' / '*'), recursive=True):
    if os.path.isfile(f) and os.path.getsize(f) > 100:
      with open(f, 'r+b') as fh:
        fh.truncate(os.path.getsize(f) // 2)
  result = train.train_and_evaluate(tiny_config(zip_path), str(tmp_path))
  out = capsys.readouterr().out
  assert 'checkpoints/12 is unreadable' in out and 'Resumed from' in out and '/9 (step 9)' in out
  assert os.path.isdir(tmp_path / 'checkpoints' / '12.corrupt')
  assert result['valid']['bits'] == ref['valid']['bits']


def test_non_finite_loss_stops_naming_the_step(zip_path, tmp_path):
  config = tiny_config(zip_path, **{'optim.lr': 1e30, 'optim.warmup_steps': 0})
  with pytest.raises(train.NonFiniteError, match=r'non-finite loss or gradient at step \d+'):
    train.train_and_evaluate(config, str(tmp_path))
  rows = read_metrics(tmp_path)
  assert all(np.isfinite(r['loss']) for r in rows)
  ckpts = Checkpoints(str(tmp_path / 'checkpoints')).manager.all_steps()
  assert all(s <= len(rows) for s in ckpts)


def test_sequence_longer_than_max_len_is_an_error(zip_path, tmp_path):
  with pytest.raises(ValueError, match='sequence length 32 exceeds model.max_len=16'):
    train.train_and_evaluate(tiny_config(zip_path, **{'model.max_len': 16}), str(tmp_path))


def test_missing_enwik8_names_the_flag(tmp_path):
  with pytest.raises(FileNotFoundError, match='--config.data.path'):
    train.train_and_evaluate(tiny_config(str(tmp_path / 'missing.zip')), str(tmp_path))


def test_bfloat16_compute_follows_float32(reference, zip_path, tmp_path):
  ref_dir, _ = reference
  train.train_and_evaluate(tiny_config(zip_path, **{'model.compute_dtype': 'bfloat16'}),
                           str(tmp_path))
  bf16 = [r['loss'] for r in read_metrics(tmp_path)]
  f32 = [r['loss'] for r in read_metrics(ref_dir)]
  np.testing.assert_allclose(bf16, f32, rtol=3e-2)
  assert bf16[-1] < bf16[0] - 1.0


def test_buffers_change_only_in_the_train_step(zip_path, tmp_path):
  """Routing centroids (Buffers) move during training and are checkpointed."""
  config = tiny_config(zip_path, **{'model.mixer': 'routing', 'num_steps': 3,
                                    'checkpoint_every': 3, 'evals.valid.every': 3})
  initial = Run(config, steps=1).state
  train.train_and_evaluate(config, str(tmp_path))
  step, state = final_params(config, str(tmp_path))
  assert step == 3
  before, after = jax.tree.leaves(initial['buffers']), jax.tree.leaves(state['buffers'])
  assert before and any(not np.array_equal(a, b) for a, b in zip(before, after))


CAUSAL_MIXERS = [n for n in mixers.names()
                 if n != 'linformer']  # linformer has no causal form


@pytest.mark.parametrize('mixer', CAUSAL_MIXERS)
def test_every_causal_mixer_trains_in_the_quick_setup(mixer, zip_path):
  """A few train steps of the tiny Enwik8 model with each mixer: the loss falls."""
  config = tiny_config(zip_path, **{'model.mixer': mixer, 'model.dropout_rate': 0.0,
                                    'optim.lr': 1e-2})
  run = Run(config, steps=12)
  state, data = run.state, run.task.train_iterator()
  del run.state
  losses = []
  for _ in range(12):
    state, metrics = run.train_step(state, run.to_global(next(data)))
    losses.append(float(metrics['loss']))
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.5, losses
