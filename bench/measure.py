"""Shared by the workers: wall time, process memory and how a measurement ended."""
from __future__ import annotations

import resource
import statistics
import sys
import time


def median_time(run, repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
  """Median wall seconds of `run()` (which must block until its result is ready)."""
  for _ in range(warmup):
    run()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  return statistics.median(times), times


def time_phases(phases: dict, repeats: int, record) -> None:
  """phases: name -> (run, fields). Times each run() (median of `repeats` after a warm-up)
  and records, prefixed by the phase's name, its fields (a dict, or a function called after
  the calls), the time and the resident set at the start and at the peak of the calls."""
  rss = ResidentSet()
  for phase, (run, fields) in phases.items():
    start = rss.start()
    seconds, times = median_time(run, repeats)
    fields = fields() if callable(fields) else fields
    record(**{f'{phase}_{key}': value for key, value in fields.items()},
           **{f'{phase}_s': seconds, f'{phase}_times': times, f'{phase}_rss_start_bytes': start,
              f'{phase}_rss_peak_bytes': rss.peak()}, process_peak_rss_bytes=rss.lifetime)


def time_train_steps(step, repeats: int, tokens_per_step: int, record) -> float:
  """A train step's first call (compilation included where there is one), then the median of
  `repeats` after a warm-up; records first_step_s, step_s, step_times and tokens_per_s and
  returns step_s. `step()` must block until the step is done."""
  t = time.perf_counter()
  step()
  first_s = time.perf_counter() - t
  seconds, times = median_time(step, repeats)
  record(first_step_s=first_s, step_s=seconds, step_times=times,
         tokens_per_s=tokens_per_step / seconds)
  return seconds


def _rss() -> tuple[int, int]:
  """(current, peak) resident bytes: /proc on Linux, else ru_maxrss (bytes on macOS) for both."""
  try:
    with open('/proc/self/status') as f:
      fields = dict(line.split(':', 1) for line in f if ':' in line)
    return tuple(int(fields[k].split()[0]) * 1024 for k in ('VmRSS', 'VmHWM'))
  except (OSError, KeyError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == 'darwin' else peak * 1024
    return peak, peak


class ResidentSet:
  """Peak resident set of one phase of a measurement.

  On Linux (>= 4.0) `start` resets the kernel's high-water mark to the current
  resident size, so the phase's peak leaves out the compiler's (which dominates at
  short lengths and would flatten the log-log slopes). Elsewhere the peak is the
  process's. `lifetime` keeps the whole process's peak, compiler included.
  """

  def __init__(self):
    self.lifetime = 0

  def start(self) -> int:
    self.peak()
    try:
      with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    except OSError:
      pass
    return _rss()[0]

  def peak(self) -> int:
    peak = _rss()[1]
    self.lifetime = max(self.lifetime, peak)
    return peak


def is_out_of_memory(error: BaseException) -> bool:
  text = f'{type(error).__name__} {error}'.lower()
  return isinstance(error, MemoryError) or any(
      s in text for s in ('resource_exhausted', 'out of memory', "can't allocate memory",
                          'cannot allocate memory'))


class NotApplicable(Exception):
  """The implementation has no such mode (a bidirectional-only mixer asked to be causal)."""
