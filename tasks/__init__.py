"""Tasks: what a config trains, one module each, found by `config.task`.

`config.task = 'text_lm'` loads `tasks.text_lm`; a dotted name ('my_pkg.my_task')
loads that module, so a task can live outside this package. The module's `Task`
class (a `tasks.base.Task`) is built from the config.
"""
from __future__ import annotations

import importlib

from tasks.base import Task


def get(config) -> Task:
  name = config.task
  path = name if '.' in name else f'tasks.{name}'
  try:
    module = importlib.import_module(path)
  except ModuleNotFoundError as e:
    if e.name not in (path, path.rpartition('.')[0]):
      raise  # the task exists but one of its imports is missing
    raise ValueError(f'unknown task {name!r} (config.task): no module {path!r}; built-in tasks: '
                     f'{", ".join(builtin())}') from None
  return module.Task(config)


def builtin() -> list[str]:
  import pkgutil
  import tasks
  return sorted(m.name for m in pkgutil.iter_modules(tasks.__path__)
                if m.name != 'base' and not m.name.startswith('_'))
