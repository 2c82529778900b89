#!/usr/bin/env bash
# Sets up .venv with the test requirements, then runs the whole test suite.
source "$(dirname "$0")/env.sh" requirements-test.txt
exec python -m pytest -q tests "$@"
