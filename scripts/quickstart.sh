#!/usr/bin/env bash
# The quickstart: sets up .venv, then trains a small causal byte LM on the built-in
# stdlib text (no download) for about 3 minutes on 2 CPU cores. Extra flags pass through.
source "$(dirname "$0")/env.sh"
exec python train.py --config=configs/enwik8.py:quick --workdir="${WORKDIR:-runs/quickstart}" "$@"
