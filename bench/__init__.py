"""Speed and memory benchmarks of the mixers, beside the implementations researchers use.

  python -m bench.mixers [--mixers=softmax,performer] [--lengths=256,1024,4096,16384] [--peers]
  python -m bench.train_step [--mixers=...] [--lengths=1024,4096]

Every measurement runs in a fresh process (bench/worker.py), so an out-of-memory
crash is isolated and the process's peak resident size is the measurement's own.
Peers need bench/requirements-peers.txt (a separate virtualenv; never CI).
"""
