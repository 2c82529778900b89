"""SIGTERM to a training process: it finishes its step, saves the checkpoint of that step with
the data position, says where and exits 0; rerunning resumes and ends bitwise where an
uninterrupted run ends. The same run writes a profiler trace of its steps 1-2."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import train
from tests.helpers import assert_same_end, read_metrics, tiny_config
from trainlib.checkpoints import Checkpoints
from trainlib.profiling import window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sigterm_saves_the_step_and_the_resumed_run_matches(reference, zip_path, tmp_path):
  ref_dir, _ = reference
  t0 = time.perf_counter()
  proc = subprocess.Popen(
      [sys.executable, '-m', 'tests.cli_run', 'train', zip_path, str(tmp_path),
       'seconds_per_batch=0.3', 'checkpoint_every=5', 'profile_steps=(1, 2)'], cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT,
                                                     JAX_PLATFORMS='cpu'),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lines = []
  for line in proc.stdout:  # the first logged step: compiled and training
    lines.append(line)
    if line.startswith('step 1/12 '):
      break
  t_signal = time.perf_counter()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  t_exit = time.perf_counter()
  out = ''.join(lines) + out
  assert proc.returncode == 0, out[-3000:] + err[-3000:]
  stopped = re.search(r'Stopped by SIGTERM after step (\d+) of 12: saved (\S+)/(\d+) ', out)
  assert stopped, out[-3000:]
  step = int(stopped.group(1))
  assert 1 <= step < 12 and stopped.group(3) == str(step)
  assert Checkpoints(str(tmp_path / 'checkpoints')).latest_step() == step
  assert [r['step'] for r in read_metrics(tmp_path)] == list(range(1, step + 1))
  assert f'Profile of steps 1-2 written to {tmp_path}/profile' in out
  assert glob.glob(str(tmp_path / 'profile' / 'plugins' / 'profile' / '*' / '*.xplane.pb'))
  print(f'timeline: process started 0 s, step 1 logged and SIGTERM sent {t_signal - t0:.1f} s, '
        f'stopped after step {step}, saved and exited 0 at {t_exit - t0:.1f} s')

  # checkpoint_every=5 (as above): the stop's checkpoint is not a regular one; it changes
  # nothing else.
  resumed = train.train_and_evaluate(tiny_config(zip_path, checkpoint_every=5), str(tmp_path))
  assert_same_end(tiny_config(zip_path), reference, str(tmp_path), resumed)
  assert [(r['step'], r['loss']) for r in read_metrics(tmp_path)] == [
      (r['step'], r['loss']) for r in read_metrics(ref_dir)]


def test_profile_steps_must_be_a_window(zip_path):
  assert window(tiny_config(zip_path)) is None
  for bad in ((3, 1), (0, 2), (5,), (1.5, 2)):
    with pytest.raises(ValueError, match='config.profile_steps must be two steps'):
      window(tiny_config(zip_path, profile_steps=bad))
