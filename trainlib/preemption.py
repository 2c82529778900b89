"""Stopping a run cleanly on SIGTERM (a scheduler's preemption notice) or Ctrl-C: the loop
finishes the step it is on, saves a checkpoint with the data iterator's position, says where
and returns; the command exits 0 and rerunning it resumes.

One process: a Python handler notes the signal; the loop asks `reached(step)` after each step.
Several processes (jax.distributed) must stop at the same step, or their saves would never
meet: SIGTERM is left to JAX's preemption notifier (installed by jax.distributed.initialize),
which tells every process and picks the step, read through orbax's
`CheckpointManager.reached_preemption`; a Ctrl-C is handed to that notifier as SIGTERM.
A second Ctrl-C stops at once (KeyboardInterrupt).
"""
from __future__ import annotations

import os
import signal
import threading

import jax


class StopRequest:
  """Context manager installing the handlers (main thread only; restored on exit)."""

  def __init__(self):
    self.signal_name = None      # set by the handler: 'SIGTERM' or 'SIGINT'
    self._previous = {}
    self._multi = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # signal.signal works only there; a run in a thread stops as before
    signals = [signal.SIGINT] if self._multi else [signal.SIGINT, signal.SIGTERM]
    for s in signals:
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    if signum == signal.SIGINT and self.signal_name == 'SIGINT':
      raise KeyboardInterrupt  # the second Ctrl-C: stop now
    if self.signal_name is None:
      print(f'{signal.Signals(signum).name} received: finishing this step, then saving a '
            'checkpoint and stopping (Ctrl-C again stops at once).', flush=True)
    self.signal_name = self.signal_name or signal.Signals(signum).name
    if self._multi and signum == signal.SIGINT:
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's notifier, which syncs every process

  def reached(self, step: int, manager) -> bool:
    """True at the step to stop after. Call it at every step on every process: in multi-process
    runs it takes part in the preemption sync (orbax `reached_preemption`)."""
    synced = manager.reached_preemption(step)
    if synced and self.signal_name is None:
      self.signal_name = 'a preemption notice'
    return synced or (not self._multi and self.signal_name is not None)
