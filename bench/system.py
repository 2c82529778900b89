"""What a result was measured on: the machine, the device and the library versions."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

PACKAGES = ('jax', 'jaxlib', 'flax', 'numpy', 'torch', 'performer-pytorch', 'matplotlib')


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cpu_cores() -> int:
  """The cores this process may run on (the affinity mask where the OS has one)."""
  if hasattr(os, 'sched_getaffinity'):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def memory_bytes() -> int | None:
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def versions() -> dict:
  """Installed versions, read from package metadata so nothing heavy is imported."""
  out = {'python': sys.version.split()[0]}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


def host() -> dict:
  return {'cpu': cpu_model(), 'cores': cpu_cores(), 'memory_bytes': memory_bytes(),
          'platform': platform.platform()}


def jax_device() -> dict:
  """Called inside a worker: the parent never initialises a backend (on a GPU that would
  preallocate device memory the measurements need)."""
  import jax
  d = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device_kind': d.device_kind,
          'device_count': jax.device_count()}


def torch_device() -> dict:
  """Which PyTorch peers can run, and on what: {} where torch is not installed."""
  try:
    import torch
  except ImportError:
    return {}
  try:
    import performer_pytorch  # noqa: F401
    performer = True
  except ImportError:
    performer = False
  return {'torch_device': 'cuda' if torch.cuda.is_available() else 'cpu',
          'torch_device_kind': (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                else cpu_model()),
          'performer_pytorch': performer}
