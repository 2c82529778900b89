"""Signals in grain's worker processes (decoding and augmenting in parallel to training)."""
from __future__ import annotations

import os
import signal


def grain_worker_init(worker_index: int, worker_count: int) -> None:
  """worker_init_fn for grain's mp_prefetch: a terminal's Ctrl-C reaches every process of the
  group, and a scheduler's SIGTERM may too; the workers ignore both and pass SIGTERM on to the
  training process, which finishes its step (the batch is in hand), saves and stops them."""
  del worker_index, worker_count
  parent = os.getppid()
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, lambda *_: os.kill(parent, signal.SIGTERM))
