# Sourced by the other scripts: creates .venv and installs the pinned requirements once
# (again whenever a requirements file changes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"' \
  || { echo "ERROR: $PY is older than Python 3.11 (jax/flax/grain need 3.11+); set PYTHON=python3.11"; exit 1; }
stamp=.venv/.requirements.sha
want=$(cat requirements.txt "$@" | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Setting up .venv (pinned requirements$( [ $# -gt 0 ] && echo " + $*"))..."
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt \
    $(for f in "$@"; do echo "-r $f"; done)
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
