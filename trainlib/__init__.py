"""Helpers that train.py and eval.py share: mesh and sharding, optimizer, checkpoints, metrics."""
