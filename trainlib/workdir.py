"""A workdir belongs to one run: one process at a time, its config recorded and compared.

- `Lock`: a lock file holding host and PID, taken with O_EXCL, released at exit and
  taken over when its holder (on this host) is gone.
- `config_changes`: the dotted keys whose values differ between the config recorded in
  the workdir (config.json, written at start) and this run's.
- `trim_metrics`: drops metrics.jsonl rows of steps after the one a run resumes from,
  so a resumed run's file has each step once.
"""
from __future__ import annotations

import json
import os
import socket
import time


class WorkdirError(ValueError):
  """The workdir cannot be used as asked (in use, or holding another model)."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


class Lock:

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), 'lock')
    self.held = False

  def acquire(self) -> None:
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    me = {'host': socket.gethostname(), 'pid': os.getpid(), 'since': time.strftime('%c')}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        holder = self._holder()
        if holder and holder.get('host') == me['host'] and not _alive(holder.get('pid', -1)):
          print(f'Taking over the lock of process {holder["pid"]}, which is gone.', flush=True)
          os.remove(self.path)
          continue
        where = (f'process {holder.get("pid")} on {holder.get("host")} (since '
                 f'{holder.get("since")})' if holder else 'another process')
        raise WorkdirError(
            f'workdir {os.path.dirname(self.path)} is in use by {where}. Wait for it, stop it, '
            f'or use another --workdir; if that process is gone, delete {self.path}.') from None
      with os.fdopen(fd, 'w') as f:
        json.dump(me, f)
      self.held = True
      return

  def _holder(self) -> dict | None:
    try:
      with open(self.path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def release(self) -> None:
    if self.held:
      self.held = False
      holder = self._holder()
      if holder and holder.get('pid') == os.getpid():
        os.remove(self.path)


def _flatten(d: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def recorded_config(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def config_changes(recorded: dict, config) -> list[tuple[str, object, object]]:
  """(dotted key, recorded value, this run's value) for every key that differs."""
  old, new = _flatten(recorded), _flatten(json.loads(config.to_json_best_effort()))
  return [(k, old.get(k, '<absent>'), new.get(k, '<absent>'))
          for k in sorted(set(old) | set(new)) if old.get(k, '<absent>') != new.get(k, '<absent>')]


def describe(changes) -> str:
  """The changes as text, the model's first (those are what make a checkpoint not fit)."""
  ordered = sorted(changes, key=lambda c: (not c[0].startswith('model.'), c[0]))
  return '; '.join(f'{k}: {a!r} -> {b!r}' for k, a, b in ordered)


def check_same_model(workdir: str, config, recorded: dict | None) -> None:
  """Refuses a config whose task, mixer or mixer options differ from the recorded run's: the
  arrays can have the same shapes (softmax and linear attention do) and still mean another
  model, which a shape check cannot see."""
  if recorded is None:
    return
  mine = f'model.mixer_options.{config.model.mixer}.'
  if any(k in ('task', 'model.mixer') or k.startswith(mine)
         for k, _, _ in config_changes(recorded, config)):
    raise mismatch(f'the checkpoints in {workdir} were written by another model (task, mixer or '
                   f'mixer options)', workdir, config, recorded)


def mismatch(error, workdir: str, config, recorded: dict | None = None) -> WorkdirError:
  """The error for a checkpoint of another model: what differs and the ways out."""
  recorded = recorded if recorded is not None else recorded_config(workdir)
  changed = describe(config_changes(recorded, config)) if recorded else '(no config.json)'
  return WorkdirError(
      f'{error}. This config differs from the one recorded in {workdir}/config.json: {changed}. '
      f'Nothing was changed. Use the recorded config, train in a new --workdir, or start a new '
      f'workdir from these parameters with --config.init_from={workdir} (when the model itself '
      f'is unchanged).')


def trim_metrics(workdir: str, last_step: int) -> None:
  """Keeps the metrics.jsonl rows of steps <= last_step (the rows a resumed run redoes go)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [l for l in lines if l.strip() and _step(l) is not None and _step(l) <= last_step]
  if len(kept) != len(lines):
    with open(path + '.tmp', 'w') as f:
      f.writelines(kept)
    os.replace(path + '.tmp', path)


def _step(line: str) -> int | None:
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):
    return None
