"""config.profile_steps = (a, b): a jax.profiler trace of train steps a..b (inclusive) in
<workdir>/profile, written by process 0 only; open it with TensorBoard's profile plugin
(or xprof), or the trace.json.gz inside with Perfetto."""
from __future__ import annotations

import os

import jax


def window(config) -> tuple[int, int] | None:
  steps = config.get('profile_steps')
  if steps is None:
    return None
  if (not isinstance(steps, (tuple, list)) or len(steps) != 2
      or not all(isinstance(s, int) for s in steps) or not 1 <= steps[0] <= steps[1]):
    raise ValueError(f'config.profile_steps must be two steps (first, last) with 1 <= first <= '
                     f'last, e.g. --config.profile_steps="(10, 15)"; got {steps!r}')
  return tuple(steps)


class Profiler:
  """Call before(step) ahead of each train step and after(step, state) once it is dispatched."""

  def __init__(self, config, workdir: str):
    self.steps = window(config)
    self.directory = os.path.join(os.path.abspath(workdir), 'profile')
    self.active = False

  def before(self, step: int) -> None:
    if (self.steps and not self.active and jax.process_index() == 0
        and self.steps[0] <= step <= self.steps[1]):  # a resumed run starts where it can
      jax.profiler.start_trace(self.directory)
      self.active = True

  def after(self, step: int, state) -> None:
    if self.active and step == self.steps[1]:
      jax.block_until_ready(state)  # the trace covers the steps' device work
      self.stop()
      print(f'Profile of steps {self.steps[0]}-{self.steps[1]} written to {self.directory}',
            flush=True)

  def stop(self) -> None:
    if self.active:
      self.active = False
      jax.profiler.stop_trace()
