#!/usr/bin/env bash
# Sets up .venv with the test requirements, then runs the whole test suite.
source "$(dirname "$0")/env.sh" requirements-test.txt
# Two workers, whole files per worker (module fixtures stay shared): most of a test is XLA
# compiling on one core, so two at once use both cores.
exec python -m pytest -q -n 2 --dist loadfile tests "$@"
