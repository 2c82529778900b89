"""Token mixers behind one interface: `mixers.build(name, dim=..., ...)`.

Importing this package loads only the contract; the registry imports the mixer
families (mixers/registry.py, FAMILIES) the first time build, names, options or
option_defaults is called.
"""
from mixers.base import Buffer, Mixer, update_all_buffers
from mixers.registry import build, names, option_defaults, options, register
