#!/usr/bin/env bash
# Create the interpreter that runs the other NIR frameworks (norse, sinabs, rockpool, spyx,
# snnTorch) for the interop tests: their pins conflict with the main environment's (sinabs pins
# nir<=1.0.4 and the closed samna; spyx brings jax), so they live apart.
#
#   bash scripts/interop-env.sh [DIR]        DIR defaults to .venv-interop
#
# Idempotent: an existing DIR that imports every framework at its pinned version is left as is;
# a broken or partial one is rebuilt.
set -euo pipefail

DIR="${1:-.venv-interop}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
LOCK="$HERE/requirements-interop.lock"
PYTHON="${PYTHON:-python3.11}"

log() { printf 'interop-env: %s\n' "$*" >&2; }

env_ok() {
  [ -x "$DIR/bin/python" ] || return 1
  "$DIR/bin/python" - <<'PY' >/dev/null 2>&1
from importlib.metadata import version
want = {"torch": "2.13.0+cpu", "norse": "1.1.0", "sinabs": "3.1.3", "rockpool": "3.1.0",
        "spyx": "1.0.0", "snntorch": "1.0.0", "nir": "1.0.8"}
for name, v in want.items():
    assert version(name) == v, (name, version(name))
import norse.torch, sinabs, rockpool.nn.modules, spyx.nir, snntorch.export_nir  # noqa: F401
PY
}

if env_ok; then
  log "$DIR already has norse, sinabs, rockpool, spyx and snnTorch at their pins: nothing to do"
  exit 0
fi
if [ -e "$DIR" ]; then
  log "$DIR exists but is incomplete or has other versions: rebuilding it"
  rm -rf "$DIR"
fi
"$PYTHON" -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# torch first and exactly: an open range would pull a multi-GB CUDA build.
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
# torch is named again so that no package in the lock can move it.
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check -r "$LOCK" torch==2.13.0
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps sinabs==3.1.3
if ! env_ok; then
  log "error: $DIR was created but does not import the pinned frameworks; see pip's output" \
      "above, then rerun \`make interop-env\`"
  exit 1
fi
log "ready: $DIR/bin/python"
