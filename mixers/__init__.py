"""Token mixers behind one interface: `mixers.build(name, dim=..., ...)`.

Importing this package registers every mixer; add a new family's module to the
imports below.
"""
from mixers.base import Buffer, Mixer, update_all_buffers
from mixers.registry import build, names, options, register
# Imported to register their mixers.
from aft import modules as _aft  # noqa: F401  (registers 'aft_full', 'aft_local', ...)
from performer import modules as _performer  # noqa: F401  (registers 'performer')
from mixers import (linear_attention, linformer, lsh, mlp_mixer, routing,  # noqa: F401
                    sinkhorn, softmax, sparse_attention, synthesizer)
