"""Token mixers behind one interface: `mixers.build(name, dim=..., ...)`.

Importing this package registers every mixer; add a new family's module to the
imports below.
"""
from mixers.base import Buffer, Mixer, update_all_buffers
from mixers.registry import build, names, options, register
# Imported to register their mixers.
from mixers import (linformer, lsh, mlp_mixer, routing, sinkhorn, softmax,  # noqa: F401
                    sparse_attention, synthesizer)
